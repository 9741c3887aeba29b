"""The controller's durable state in SQLite: every alert seen, every action and the step it has reached, the
kill switch, and an outbox of audit records not yet handed to the audit spool.

A decision and what it means to do are committed in one transaction before anything is done about them, and
each step's result is committed before the next step starts, so a process killed at any point restarts where
it was: nothing is done twice (the alerts are remembered) and nothing is forgotten (the action is open).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kfloop.errors import NotReady
from monitoring.controller.alerts import WebhookAlert

DONE = "done"
"""The phase of a finished action (its outcome says how it ended)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY,
    alertname TEXT NOT NULL,
    status TEXT NOT NULL,
    evidence TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    notifications INTEGER NOT NULL,
    action_id TEXT
);
CREATE TABLE IF NOT EXISTS actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    phase TEXT NOT NULL,
    outcome TEXT,
    reason TEXT NOT NULL,
    alerts TEXT NOT NULL,
    details TEXT NOT NULL,
    model_version TEXT,
    variant TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS actions_open ON actions (phase, kind);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (record_id TEXT PRIMARY KEY, record TEXT NOT NULL);
"""
_ACTION_COLUMNS = (
    "id, kind, actor, phase, outcome, reason, alerts, details, model_version, variant, created_at, updated_at, "
    "finished_at"
)


@dataclass(frozen=True)
class ActionRow:
    """One action: what called for it, the step it has reached and, once done, how it ended."""

    id: str
    kind: str
    actor: str
    """Who or what decided it: the controller, or the operator who paused it."""
    phase: str
    created_at: str
    updated_at: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """The alerts' evidence (AlertEvidence JSON)."""
    details: dict[str, Any] = field(default_factory=dict)
    """What its steps used and produced (run id, log, serving change)."""
    outcome: str | None = None
    reason: str = ""
    model_version: str | None = None
    variant: str | None = None
    finished_at: str | None = None

    @property
    def is_open(self) -> bool:
        return self.phase != DONE

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def advanced(self, now: str, **changes: Any) -> ActionRow:
        return replace(self, updated_at=now, **changes)


def _row(values: tuple[Any, ...]) -> ActionRow:
    (id_, kind, actor, phase, outcome, reason, alerts, details, version, variant, created, updated, finished) = values
    return ActionRow(
        id=id_,
        kind=kind,
        actor=actor,
        phase=phase,
        outcome=outcome,
        reason=reason,
        alerts=json.loads(alerts),
        details=json.loads(details),
        model_version=version,
        variant=variant,
        created_at=created,
        updated_at=updated,
        finished_at=finished,
    )


class ControllerStore:
    """SQLite, one connection shared by the webhook's threads and the reconcile loop behind one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    @property
    def ready(self) -> bool:
        return self._db is not None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a committed decision survives a power cut, not only a kill
        db.executescript(_SCHEMA)
        self._db = db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextmanager
    def transaction(self) -> Iterator[ControllerStore]:
        """Everything inside commits together, or not at all (re-entrant: an inner one joins the outer)."""
        with self._lock:
            db = self._conn()
            if db.in_transaction:
                yield self
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise NotReady("the controller's state is not open")
        return self._db

    def _sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn().execute(sql, params).fetchall()

    # -- alerts ---------------------------------------------------------------------------------------
    def remember(self, alerts: list[WebhookAlert], now: str) -> list[WebhookAlert]:
        """Note each alert (a repeat bumps its count, a resolution its status); returns those that fire and
        were never seen before, once each."""
        new: dict[str, WebhookAlert] = {}
        with self.transaction():
            for alert in alerts:
                key = alert.key
                known = self._sql("SELECT 1 FROM alerts WHERE key = ?", (key,))
                if known or key in new:
                    self._sql(
                        "UPDATE alerts SET status = ?, last_seen = ?, notifications = notifications + 1 WHERE key = ?",
                        (alert.status, now, key),
                    )
                    continue
                evidence = alert.evidence().model_dump_json()
                self._sql(
                    "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, 1, NULL)",
                    (key, alert.labels["alertname"], alert.status, evidence, now, now),
                )
                if alert.status == "firing":
                    new[key] = alert
        return list(new.values())

    def link_alerts(self, keys: list[str], action_id: str) -> None:
        with self.transaction():
            for key in keys:
                self._sql("UPDATE alerts SET action_id = ? WHERE key = ?", (action_id, key))

    def alert(self, key: str) -> dict[str, Any] | None:
        rows = self._sql("SELECT key, status, notifications, action_id FROM alerts WHERE key = ?", (key,))
        return dict(zip(("key", "status", "notifications", "action_id"), rows[0], strict=True)) if rows else None

    # -- actions --------------------------------------------------------------------------------------
    def insert_action(self, row: ActionRow) -> None:
        self._sql(
            f"INSERT INTO actions ({_ACTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._values(row),
        )

    def save_action(self, row: ActionRow) -> None:
        """Replace the stored action with `row` (same id)."""
        values = self._values(row)
        sets = ", ".join(f"{c.strip()} = ?" for c in _ACTION_COLUMNS.split(",")[1:])
        self._sql(f"UPDATE actions SET {sets} WHERE id = ?", (*values[1:], row.id))

    @staticmethod
    def _values(row: ActionRow) -> tuple[Any, ...]:
        return (
            row.id,
            row.kind,
            row.actor,
            row.phase,
            row.outcome,
            row.reason,
            json.dumps(row.alerts, sort_keys=True),
            json.dumps(row.details, sort_keys=True),
            row.model_version,
            row.variant,
            row.created_at,
            row.updated_at,
            row.finished_at,
        )

    def action(self, action_id: str) -> ActionRow | None:
        rows = self._sql(f"SELECT {_ACTION_COLUMNS} FROM actions WHERE id = ?", (action_id,))
        return _row(rows[0]) if rows else None

    def open_actions(self, kind: str | None = None) -> list[ActionRow]:
        """Unfinished actions, oldest first."""
        sql = f"SELECT {_ACTION_COLUMNS} FROM actions WHERE phase != ?"
        params: tuple[Any, ...] = (DONE,)
        if kind is not None:
            sql, params = sql + " AND kind = ?", (*params, kind)
        return [_row(r) for r in self._sql(sql + " ORDER BY seq", params)]

    def recent_actions(self, limit: int, kind: str | None = None) -> list[ActionRow]:
        """The newest actions first."""
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        sql = f"SELECT {_ACTION_COLUMNS} FROM actions {where} ORDER BY seq DESC LIMIT ?"
        return [_row(r) for r in self._sql(sql, (*params, limit))]

    def last_run_end(self, kind: str) -> dict[str, Any] | None:
        """The `run_end` detail of the newest action of `kind` whose run has ended (success, ended_at)."""
        sql = (
            "SELECT json_extract(details, '$.run_end') FROM actions WHERE kind = ? "
            "AND json_extract(details, '$.run_end') IS NOT NULL ORDER BY seq DESC LIMIT 1"
        )
        rows = self._sql(sql, (kind,))
        return json.loads(rows[0][0]) if rows else None

    def outcome_counts(self) -> list[tuple[str, str, int]]:
        """(kind, outcome, count) of finished actions."""
        sql = "SELECT kind, outcome, COUNT(*) FROM actions WHERE phase = ? GROUP BY kind, outcome"
        return [(k, o, int(n)) for k, o, n in self._sql(sql, (DONE,))]

    # -- settings -------------------------------------------------------------------------------------
    def setting(self, key: str) -> Any:
        rows = self._sql("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: Any) -> None:
        self._sql("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    # -- audit outbox ---------------------------------------------------------------------------------
    def add_to_outbox(self, record_id: str, record_json: str) -> None:
        self._sql("INSERT OR IGNORE INTO outbox VALUES (?, ?)", (record_id, record_json))

    def outbox(self) -> list[tuple[str, str]]:
        return [(r, j) for r, j in self._sql("SELECT record_id, record FROM outbox ORDER BY rowid")]

    def remove_from_outbox(self, record_id: str) -> None:
        with self.transaction():
            self._sql("DELETE FROM outbox WHERE record_id = ?", (record_id,))
