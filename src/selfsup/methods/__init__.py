"""The pretext-task methods: one module each, found through the registry (:mod:`.registry`)."""

from selfsup.methods.base import CROSS_CORRELATION, PICTURES, TEST_METRICS, Method, MethodOutput, Progress
from selfsup.methods.registry import METHODS, MethodInfo, get_method

__all__ = [
    "CROSS_CORRELATION",
    "PICTURES",
    "TEST_METRICS",
    "METHODS",
    "Method",
    "MethodInfo",
    "MethodOutput",
    "Progress",
    "get_method",
]
