"""A description of the machine a benchmark ran on, saved beside its figures (selfsup's own, which
every run also records in RUN_DIR/run.json)."""

from selfsup.train.machine import machine_info

__all__ = ["machine_info"]
