"""A method's configuration: its recipe (``selfsup/recipes/METHOD.yaml``, or ``METHOD_small.yaml``
for small images), then the user's YAML file, ``key=value`` overrides and CLI flags, read into the
plain :class:`selfsup.config.Config` with the method's own parameters' class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfsup.config import CONFIG_FILE, Config, apply_mapping, apply_overrides, fit_schedules, read_yaml
from selfsup.errors import ConfigError
from selfsup.methods.registry import RECIPES_DIR, get_method

SMALL_IMAGE_MAX_SIDE = 16  # data at or below this side use the method's `_small` recipe


def recipe_path(method: str, small_images: bool) -> Path:
    """The recipe of ``method`` (its ``_small`` variant for small images where there is one).

    Raises :class:`ConfigError` for an unknown method."""
    get_method(method)
    small = RECIPES_DIR / f"{method}_small.yaml"
    return small if small_images and small.exists() else RECIPES_DIR / f"{method}.yaml"


def method_config(method: str) -> Config:
    """A :class:`Config` of the section defaults with ``method``'s default parameters."""
    info = get_method(method)
    return Config(
        method=info.params(), method_name=method, modality=info.build.modality, method_views=info.build.views
    )


def build_config(
    method: str,
    *,
    small_images: bool,
    config_file: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    flags: dict[str, Any] | None = None,
    fit: bool = True,
) -> Config:
    """Resolve a run's configuration: the method's recipe (``_small`` variant for small images),
    then the user's YAML file, then ``key=value`` overrides, then explicit CLI flags; with ``fit``,
    its schedules are then fitted to its length (:func:`selfsup.config.fit_schedules`).

    Raises :class:`ConfigError` naming the file or option at fault."""
    recipe = recipe_path(method, small_images)
    config = method_config(method)
    config.recipe = recipe.name
    apply_mapping(config, read_yaml(recipe), str(recipe))
    config.user_keys.clear()  # from here on, what the user sets
    if config_file:
        apply_mapping(config, read_yaml(config_file), str(config_file))
    apply_overrides(config, overrides, flags)
    if fit:
        fit_schedules(config)
    return config


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved configuration a run wrote to ``RUN_DIR/config.yaml``."""
    data = read_yaml(Path(run_dir) / CONFIG_FILE)
    method = data.get("method", {}).get("name")
    if method is None:
        raise ConfigError(f"{run_dir}/config.yaml names no method")
    config = method_config(method)
    config.recipe = data.get("recipe", "")
    apply_mapping(config, data, f"{run_dir}/config.yaml")
    return config
