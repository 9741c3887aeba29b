"""Builders shared by the audit tests (no tests here)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kfloop.audit import Decision, parse_record

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MODEL_VERSIONS = ("m-2026-11-20", "m-2026-11-22")


def decision_json(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid decision as a producer would send it; varied across i so filters have something to pick."""
    return {
        "request_id": f"req-{i:06d}",
        "ts": (T0 + timedelta(seconds=i)).isoformat(),
        "model_version": MODEL_VERSIONS[i % 2],
        "variant": "canary" if i % 10 == 0 else "stable",
        "user_id": f"u-{i % 97}",
        "inputs": {"user_feature_0": f"h{i % 13}", "affinity": [round(0.01 * (i % 100), 2), 0.5], "age_days": i % 365},
        "candidates": [
            {"item_id": f"item-{(i + k) % 80}", "position": k + 1, "score": round(1.0 - 0.1 * k, 3), "propensity": 0.8}
            for k in range(3)
        ],
        "policy": {"name": "epsilon_greedy", "epsilon": 0.1},
        **overrides,
    }


def decision(i: int, **overrides: Any) -> Decision:
    record = parse_record(decision_json(i, **overrides))
    assert isinstance(record, Decision)
    return record


def decisions(n: int, start: int = 0) -> list[Decision]:
    return [decision(i) for i in range(start, start + n)]


def tamper_sqlite(path: Path, sql: str, *params: Any) -> None:
    """What a malicious operator with file access can do: drop the append-only triggers, then edit."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
        db.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")
        db.execute("DROP TRIGGER IF EXISTS audit_head_forward_only")
        db.execute(sql, params)
    finally:
        db.close()
