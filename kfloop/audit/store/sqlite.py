"""SQLite backend (stdlib sqlite3): WAL journal, synchronous=FULL, appends under BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kfloop.audit.chain import COLUMNS, GENESIS, ChainHead, StoredRow
from kfloop.audit.store.base import SqlStore, head_from_rows
from kfloop.errors import NotReady

_TRANSIENT = ("locked", "busy", "disk I/O", "unable to open")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_records (
        seq INTEGER PRIMARY KEY CHECK (seq >= 1),
        record_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        request_id TEXT NOT NULL,
        ts TEXT NOT NULL,
        model_version TEXT,
        variant TEXT,
        user_id TEXT,
        received_at TEXT NOT NULL,
        record TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts)",
    "CREATE INDEX IF NOT EXISTS audit_records_request ON audit_records (request_id)",
    "CREATE INDEX IF NOT EXISTS audit_records_user ON audit_records (user_id, ts)",
    "CREATE INDEX IF NOT EXISTS audit_records_model ON audit_records (model_version, ts)",
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    )""",
    f"INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}')",
    """CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
       BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
       BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: DELETE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_head_forward_only BEFORE UPDATE ON audit_head
       WHEN NEW.seq <= OLD.seq OR NEW.id != OLD.id
       BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON audit_head
       BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END""",
)


class SqliteStore(SqlStore):
    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.path = path
        self.busy_timeout_s = busy_timeout_s

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an acknowledged append survives power loss
        return db

    def _create_schema(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            exists = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_records'").fetchall()
            if not exists:  # only ever once: a head row deleted later must stay missing, for verify to see
                for statement in SCHEMA:
                    self._db.execute(statement)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _run(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        return self._db.execute(sql, params).fetchall()

    def _insert(self, rows: list[StoredRow]) -> None:
        # executemany of one prepared statement: several times faster here than a wide multi-row VALUES
        marks = ", ".join("?" for _ in COLUMNS)
        self._db.executemany(
            f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES ({marks})",
            [tuple(getattr(row, c) for c in COLUMNS) for row in rows],
        )

    def _begin_write(self) -> ChainHead:
        self._db.execute("BEGIN IMMEDIATE")  # takes the database's write lock now, not at the first write
        return head_from_rows(self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchall())

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if not any(word in str(exc) for word in _TRANSIENT):
                raise
            raise NotReady(f"audit store {self.path}: {exc}") from exc

    def _close_connection(self) -> None:
        self._db.close()
