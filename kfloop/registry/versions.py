"""Version ids and fingerprints."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

VERSION_RE = re.compile(r"^v\d{8}T\d{6}Z-[0-9a-f]{8}$")


def fingerprint(*, data_version: str, schema_version: str, code_version: str, parameters: dict[str, Any]) -> str:
    """sha256 of everything that determines a trained model; equal inputs give an equal fingerprint."""
    payload = json.dumps(
        {"data": data_version, "schema": schema_version, "code": code_version, "parameters": parameters},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def version_id(created_at: datetime, fingerprint_hex: str) -> str:
    """`v{UTC second}-{fingerprint[:8]}`: sorts by creation time; the hash keeps same-second ids apart."""
    return f"v{created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{fingerprint_hex[:8]}"


def is_version_id(text: str) -> bool:
    return bool(VERSION_RE.match(text))
