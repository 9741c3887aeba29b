"""Typed configuration: one model per deployable, loaded once at its entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from kfloop.errors import ConfigError, field_errors


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, each field's docstring is its description."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)


M = TypeVar("M", bound=BaseModel)


def load_config(model: type[M], path: Path | str | None, overrides: dict[str, Any] | None = None) -> M:
    """Read a YAML file into `model`; no file means the model's defaults. Errors name the key.

    `overrides` maps dotted keys (`event_log.log_uri`) to values, e.g. from command-line flags; None values
    are ignored. They are merged before validation, so they are checked like the file's own values.
    """
    data = _read_yaml(Path(path)) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{e['field']}: {e['reason']}" for e in field_errors(exc))
        where = f"config file {path}" if path is not None else "config"
        raise ConfigError(f"{where}: {problems}", details=field_errors(exc)) from None


def load_section(model: type[M], path: Path | str | None, key: str, overrides: dict[str, Any] | None = None) -> M:
    """Read one section of a config file, e.g. the `predictor` of the serving YAML or the `event_log` of the
    collector's, so that each deployable and tool reads the shared file instead of a copy of it. `overrides`
    are dotted keys within the section (None values ignored), checked like the file's own values."""
    data = (_read_yaml(Path(path)).get(key) or {}) if path is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: {key} must be a mapping")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{key}.{e['field']}: {e['reason']}" for e in field_errors(exc))
        where = f"config file {path}" if path is not None else "config"
        raise ConfigError(f"{where}: {problems}", details=field_errors(exc)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"cannot override {dotted}: {key} is not a mapping")
    data[leaf] = value
