"""Typed configuration: one model per deployable, loaded once at its entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from kfloop.errors import ConfigError, field_errors


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, each field's docstring is its description."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)


M = TypeVar("M", bound=BaseModel)


def load_config(model: type[M], path: Path | str | None) -> M:
    """Read a YAML file into `model`; no file means the model's defaults. Errors name the key."""
    if path is None:
        return model()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{e['field']}: {e['reason']}" for e in field_errors(exc))
        raise ConfigError(f"config file {path}: {problems}", details=field_errors(exc)) from None
