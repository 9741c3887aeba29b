"""The one byte form every hash is computed over: sorted-key compact ASCII JSON, RFC 3339 UTC timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def rfc3339(value: datetime) -> str:
    """A fixed-width UTC timestamp (microseconds, `Z`): sorts as text, round-trips exactly."""
    v = value.astimezone(UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}Z"


def parse_rfc3339(text: str) -> datetime:
    """Inverse of `rfc3339` (accepts any ISO 8601 form with a timezone)."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return parsed.astimezone(UTC)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes. ASCII-only, so no string (not even a lone surrogate) can fail to encode."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
