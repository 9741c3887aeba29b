"""PostgreSQL backend (pg8000): triggers refuse UPDATE/DELETE/TRUNCATE of records; appends lock the head row.

Give the sink's role only SELECT and INSERT on audit_records and SELECT and UPDATE on audit_head, and let
another role own the tables: then the sink cannot drop the triggers either.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kfloop.audit.chain import COLUMNS, GENESIS, ChainHead, StoredRow
from kfloop.audit.store.base import SqlStore, head_from_rows
from kfloop.errors import ConfigError, NotReady

SCHEMA_LOCK_KEY = 0x6B666C6F6F70  # any constant: serializes schema creation across replicas

SCHEMA = (
    """CREATE TABLE audit_records (
        seq BIGINT PRIMARY KEY CHECK (seq >= 1),
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
    "CREATE INDEX audit_records_ts ON audit_records (ts)",
    "CREATE INDEX audit_records_request ON audit_records (request_id)",
    "CREATE INDEX audit_records_user ON audit_records (user_id, ts)",
    "CREATE INDEX audit_records_model ON audit_records (model_version, ts)",
    """CREATE TABLE audit_head (
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
    f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}')",
    """CREATE OR REPLACE FUNCTION kfloop_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_records is append-only, % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
       FOR EACH ROW EXECUTE FUNCTION kfloop_audit_refuse_change()""",
    """CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
       FOR EACH STATEMENT EXECUTE FUNCTION kfloop_audit_refuse_change()""",
    """CREATE OR REPLACE FUNCTION kfloop_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'UPDATE' OR NEW.seq <= OLD.seq OR NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'audit_head only moves forward' USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head
       FOR EACH ROW EXECUTE FUNCTION kfloop_audit_head_forward()""",
    """CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
       FOR EACH STATEMENT EXECUTE FUNCTION kfloop_audit_head_forward()""",
)


# column i of each row array, typed: ->> gives text exactly as sent (JSON-unescaped)
_FROM_JSON = [f"CAST(r ->> {i} AS {'BIGINT' if c == 'seq' else 'TEXT'})" for i, c in enumerate(COLUMNS)]


def connect_args(url: str, *, password_file: Path | None, timeout_s: float) -> dict[str, Any]:
    """pg8000.native.Connection keyword arguments from a postgresql:// URL (sslmode: disable|require|verify-full)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    password = unquote(parts.password) if parts.password else None
    if password_file is not None:
        password = password_file.read_text().strip()
    args: dict[str, Any] = {
        "user": unquote(parts.username) if parts.username else getpass.getuser(),
        "password": password,
        "host": parts.hostname,
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")),
        "timeout": timeout_s,
        "application_name": "kfloop-audit",
    }
    sslmode = query.get("sslmode", "disable")
    if sslmode == "require":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        args["ssl_context"] = context
    elif sslmode == "verify-full":
        args["ssl_context"] = ssl.create_default_context()
    elif sslmode not in ("disable", "prefer", "allow"):
        raise ConfigError(f"sslmode={sslmode!r} is not supported; use disable, require or verify-full")
    return args


def _driver() -> Any:
    try:
        import pg8000.native
    except ImportError:
        raise ConfigError(
            "a postgresql:// audit store needs the pg8000 driver, which is not installed in this environment"
        ) from None
    return pg8000


class PostgresStore(SqlStore):
    def __init__(self, url: str, *, password_file: Path | None = None, connect_timeout_s: float = 10.0) -> None:
        super().__init__()
        self._args = connect_args(url, password_file=password_file, timeout_s=connect_timeout_s)
        self._pg = _driver()

    def __repr__(self) -> str:
        a = self._args
        return f"PostgresStore({a['user']}@{a['host']}:{a['port']}/{a['database']})"

    def _connect(self) -> Any:
        return self._pg.native.Connection(**self._args)

    def _create_schema(self) -> None:
        self._db.run("BEGIN")
        try:
            self._db.run("SELECT pg_advisory_xact_lock(:key)", key=SCHEMA_LOCK_KEY)
            exists = self._db.run("SELECT to_regclass('audit_records') IS NOT NULL")[0][0]
            if not exists:  # checked first: a role without CREATE may still use existing tables
                for statement in SCHEMA:
                    self._db.run(statement)
            self._db.run("COMMIT")
        except BaseException:
            self._db.run("ROLLBACK")
            raise

    def _run(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        return self._db.run(sql, **params) or []

    def _existing(self, record_ids: list[str]) -> dict[str, tuple[int, str]]:
        rows = self._db.run(
            "SELECT record_id, seq, record FROM audit_records WHERE record_id = ANY(CAST(:ids AS TEXT[]))",
            ids=sorted(set(record_ids)),
        )
        return {rid: (int(seq), text) for rid, seq, text in rows}

    def _insert(self, rows: list[StoredRow]) -> None:
        # The whole batch as one JSON parameter: pg8000 rewrites wide statements in quadratic time and
        # escapes array elements a character at a time; a single text value is just sent.
        batch = json.dumps([[getattr(row, c) for c in COLUMNS] for row in rows])
        self._db.run(
            f"INSERT INTO audit_records ({', '.join(COLUMNS)}) "
            f"SELECT {', '.join(_FROM_JSON)} FROM json_array_elements(CAST(:batch AS json)) AS r",
            batch=batch,
        )

    def _begin_write(self) -> ChainHead:
        self._db.run("BEGIN")
        return head_from_rows(self._db.run("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (self._pg.exceptions.InterfaceError, OSError) as exc:
            self._drop_connection()
            raise NotReady(f"audit store {self!r} unreachable: {exc}") from exc

    def _drop_connection(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):  # already broken
                self._db.close()
        self._db = None

    def _close_connection(self) -> None:
        self._drop_connection()
