"""Recorded values are JSON only: objects, arrays, strings, finite numbers, booleans, null (a hash over anything
else would not be reproducible elsewhere)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationInfo


def json_value(value: Any, path: str = "") -> Any:
    """Only JSON: objects, arrays, strings, finite numbers (JSON has no NaN or Infinity, and a hash over them would
    not be reproducible elsewhere), booleans, null; the error names the first offending path."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            json_value(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            json_value(item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path or 'value'} is {value}; only finite numbers can be recorded")
    elif not (value is None or isinstance(value, str | bool | int | float)):
        raise ValueError(f"{path or 'value'}: {type(value).__name__} is not a JSON value")
    return value


def json_object(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """A JSON object of finite values. A decision's inputs hold ~2,000 values: checked in one pass of the C
    encoder (no NaN or Infinity, nothing that is not JSON); only a failure walks it in Python, to name the
    path. (pydantic's JsonValue costs ~40x more, per value.) Values just parsed from JSON text that refuses
    NaN (`parse_record(..., parsed_json=True)`) are JSON by construction and skip the pass. Nested non-string
    keys are hashed and stored as JSON writes them, as strings, so a stored record still verifies."""
    if info.context and info.context.get(PARSED_JSON):
        return value
    try:
        _STRICT.encode(value)
    except (ValueError, TypeError, RecursionError):
        json_value(value)
        raise ValueError("not a JSON object of finite values") from None
    return value


PARSED_JSON = "parsed_json"
"""Validation context key: the values were just parsed from JSON text that refuses NaN."""
_STRICT = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
