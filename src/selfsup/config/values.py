"""Reading settings into a :class:`Config`: YAML files, ``key=value`` overrides and flags, each
value coerced to its field's type; schedules fitted to the run's length."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from selfsup.augment import AugmentConfig
from selfsup.augment.presets import PRESETS
from selfsup.config.checks import validate
from selfsup.config.sections import SECTIONS, Config
from selfsup.errors import ConfigError


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    return loaded


def schedule_keys(config: Config) -> list[str]:
    """The options that give the length of a schedule in epochs: the learning-rate warm-up and
    every ``method.*_epochs`` (DINO's teacher-temperature warm-up and frozen last layer, ...)."""
    return ["optim.warmup_epochs"] + [
        f"method.{f.name}" for f in dataclasses.fields(config.method) if f.name.endswith("_epochs")
    ]


def fit_schedules(config: Config) -> None:
    """Check every schedule measured in epochs against the run's length (``train.epochs``).

    A recipe's schedule that takes more than half the run (e.g. 10 warm-up epochs in an 8-epoch
    first try, whose learning rate would otherwise climb for the whole run and never decay) is
    shortened to half the run, and the change is noted in ``config.adjustments``; the saved
    ``config.yaml`` holds the value used. One the user set that would not end before the run does
    is refused with a :class:`ConfigError`.
    """
    epochs = config.train.epochs
    for key in schedule_keys(config):
        section, name = key.split(".")
        target = config.method if section == "method" else getattr(config, section)
        value = getattr(target, name)
        if key in config.user_keys:
            if value >= epochs:
                raise ConfigError(
                    f"option '{key}' = {value:g} does not end within the run's {epochs} "
                    f"epoch{'s' if epochs != 1 else ''}; "
                    f"set it below {epochs} (e.g. {epochs / 2:g}) or train longer"
                )
        elif value > epochs / 2:
            setattr(target, name, epochs / 2)
            config.adjustments.append(
                f"{key}: the recipe's {value:g} epochs do not fit a run of {epochs} "
                f"epoch{'s' if epochs != 1 else ''}; "
                f"{epochs / 2:g} used (half the run)"
            )


def apply_overrides(config: Config, overrides=(), flags: dict[str, Any] | None = None) -> None:
    """Apply ``key=value`` overrides, then the CLI flags that were given (not None); then validate."""
    for item in overrides:
        key, value = parse_override(item)
        set_value(config, key, value, origin=f"override '{item}'")
    for key, value in (flags or {}).items():
        if value is not None:
            set_value(config, key, value, origin=f"option for {key}")
    validate(config)


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value (e.g. optim.lr=0.5)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_mapping(config: Config, mapping: dict, origin: str) -> None:
    for section, values in mapping.items():
        if section in ("recipe", "registry"):  # the file's name; what `selfsup methods` lists
            continue
        if section == "source":
            config.source = str(values)
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section '{section}' must be a mapping")
        items = sorted(
            values.items(), key=lambda item: item[0] != "preset"
        )  # a preset first, then its overrides
        for key, value in items:
            if section == "method" and key == "name":
                if value != config.method_name:
                    raise ConfigError(
                        f"{origin}: method '{value}' does not match the chosen method '{config.method_name}'"
                    )
                continue
            set_value(config, f"{section}.{key}", value, origin=origin)


def preset_config(name: str) -> AugmentConfig:
    """A fresh augmentation configuration from the preset ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown augmentation preset '{name}' (choose from {', '.join(PRESETS)})")
    values = {key: list(value) if isinstance(value, list) else value for key, value in PRESETS[name].items()}
    return AugmentConfig(**values, preset=name)


def set_value(config: Config, key: str, value: Any, origin: str) -> None:
    if key == "augment.preset":
        config.augment = preset_config(str(value))
        return
    section, _, name = key.partition(".")
    target = (
        config.method
        if section == "method"
        else getattr(config, section, None)
        if section in SECTIONS
        else None
    )
    fields = {f.name: f for f in dataclasses.fields(target)} if target is not None else {}
    if name not in fields:
        known = (
            ", ".join(f"{section}.{f}" for f in fields)
            if fields
            else "sections " + ", ".join(("method",) + SECTIONS)
        )
        raise ConfigError(f"unknown option '{key}' in {origin} (known: {known})")
    hints = typing.get_type_hints(type(target))
    setattr(target, name, _coerce(value, hints[name], key))
    config.user_keys.add(key)


def _coerce(value: Any, hint, key: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        return _coerce(value, hint, key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple:
            if len(value) != len(args):
                raise ConfigError(f"option '{key}' needs {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        return [_coerce(v, args[0], key) for v in value]
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, float) and not value.is_integer() or isinstance(value, bool):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if isinstance(value, (list, tuple)):  # [title,description], as list options are written
                return ",".join(str(v) for v in value)
            return str(value).lower() if isinstance(value, bool) else str(value)  # YAML's true for "true"
    except (TypeError, ValueError):
        raise ConfigError(
            f"option '{key}' expects {getattr(hint, '__name__', hint)}, got {value!r}"
        ) from None
    return value


def save_config(config: Config, path: Path) -> None:
    """Write ``config`` as YAML to ``path`` (atomically; :class:`~selfsup.atomic.WriteError`)."""
    from selfsup.atomic import write_text

    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
