"""Typed run configuration as plain data: the sections' dataclasses, YAML files and ``key=value``
overrides, coerced to each field's type and checked.

What depends on the method (its recipe, its parameters' class, how many views it takes) lives in
:mod:`selfsup.methods.recipes`, which builds a :class:`Config` for a method: this module imports
no method, so that loading a run's settings does not load every method."""

from selfsup.augment import AugmentConfig
from selfsup.config.checks import CHOICES, POSITIVE, validate
from selfsup.config.sections import (
    CONFIG_FILE,
    SECTIONS,
    TEXT_BACKBONE,
    Config,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    TextConfig,
    TrainConfig,
)
from selfsup.config.values import (
    apply_mapping,
    apply_overrides,
    fit_schedules,
    parse_override,
    preset_config,
    read_yaml,
    save_config,
    schedule_keys,
    set_value,
)

__all__ = [
    "AugmentConfig",
    "CHOICES",
    "CONFIG_FILE",
    "POSITIVE",
    "SECTIONS",
    "TEXT_BACKBONE",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "TextConfig",
    "TrainConfig",
    "apply_mapping",
    "apply_overrides",
    "fit_schedules",
    "parse_override",
    "preset_config",
    "read_yaml",
    "save_config",
    "schedule_keys",
    "set_value",
    "validate",
]
