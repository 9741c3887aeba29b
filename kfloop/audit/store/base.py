"""The append-only store: SQL shared by the SQLite and PostgreSQL backends.

There is no UPDATE or DELETE of records anywhere in this code. Appends run in one write transaction that
first locks the chain head, so the chain stays linear whatever the number of concurrent writers.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kfloop.audit.canonical import canonical_json, rfc3339
from kfloop.audit.chain import COLUMNS, ChainHead, StoredRow, entry_bytes_of_text, link_hash
from kfloop.audit.record import ITEM_CONTEXT, AnyRecord, index_of, record_json, utc_now
from kfloop.errors import DataIntegrityError, NotReady

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
CONFLICT = "conflict"
ACKNOWLEDGED = frozenset({ACCEPTED, DUPLICATE})

_IN_CHUNK = 500  # record ids per IN (...) lookup, far below SQLite's parameter limit
_SELECT_COLUMNS = ", ".join(COLUMNS)


@dataclass(frozen=True, slots=True)
class Appended:
    """What happened to one record: accepted (new), duplicate (identical one stored; for an item context, the
    same content first recorded at another time), or conflict (same id, different content: kept out of the
    chain). `seq` is where the stored record with that id is."""

    record_id: str
    status: str
    seq: int


@dataclass(frozen=True)
class RowQuery:
    """Which stored records to read, in seq order. Times filter on the record's own `ts`."""

    since: datetime | None = None
    until: datetime | None = None
    model_version: str | None = None
    user_id: str | None = None
    kinds: tuple[str, ...] = ()
    request_id: str | None = None
    after_seq: int = 0
    up_to_seq: int | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, params = ["seq > :after_seq"], {"after_seq": self.after_seq}
        simple = {
            "up_to_seq": ("seq <= :up_to_seq", self.up_to_seq),
            "since": ("ts >= :since", rfc3339(self.since) if self.since else None),
            "until": ("ts < :until", rfc3339(self.until) if self.until else None),
            "model_version": ("model_version = :model_version", self.model_version),
            "user_id": ("user_id = :user_id", self.user_id),
            "request_id": ("request_id = :request_id", self.request_id),
        }
        for name, (clause, value) in simple.items():
            if value is not None:
                clauses.append(clause)
                params[name] = value
        if self.kinds:
            names = [f"kind_{i}" for i in range(len(self.kinds))]
            clauses.append(f"kind IN ({', '.join(':' + n for n in names)})")
            params.update(zip(names, self.kinds, strict=True))
        return " AND ".join(clauses), params


class SqlStore(ABC):
    """Shared logic; a backend supplies connection, schema, the head lock and error mapping."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db: Any = None
        self._opened = False

    # -- backend hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _create_schema(self) -> None: ...

    @abstractmethod
    def _run(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]: ...

    @abstractmethod
    def _insert(self, rows: list[StoredRow]) -> None:
        """Insert linked rows inside the current write transaction."""

    @abstractmethod
    def _begin_write(self) -> ChainHead:
        """Start a write transaction holding the chain head locked against other writers; return it."""

    @abstractmethod
    def _errors(self) -> Any:
        """A context manager turning driver errors into KfloopErrors (and dropping a broken connection)."""

    @abstractmethod
    def _close_connection(self) -> None: ...

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect and create the tables and triggers if they are missing."""
        with self._lock, self._errors():
            self._db = self._connect()
            self._opened = True
            self._create_schema()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._close_connection()
            self._db = None
            self._opened = False

    @property
    def ready(self) -> bool:
        return self._opened

    def __enter__(self) -> SqlStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _session(self) -> Iterator[None]:
        with self._lock, self._errors():
            if not self._opened:
                raise NotReady("the audit store is not open")
            if self._db is None:  # dropped after a connection failure: reconnect
                self._db = self._connect()
            yield

    # -- writes --------------------------------------------------------------------------------------
    def append(self, records: Sequence[AnyRecord], *, received_at: datetime | None = None) -> list[Appended]:
        """Append records to the chain in order, skipping ones already stored (by record id)."""
        prepared = [_prepare(r) for r in records]
        if not prepared:
            return []
        with self._session():
            try:
                head = self._begin_write()
                results, rows = self._link(prepared, head, rfc3339(received_at or utc_now()))
                self._insert(rows)
                if rows:
                    self._run(
                        "UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1",
                        {"seq": rows[-1].seq, "hash": rows[-1].hash},
                    )
                self._run("COMMIT", {})
            except BaseException:
                self._rollback_quietly()
                raise
        return results

    def _link(
        self, prepared: list[tuple[dict[str, Any], str]], head: ChainHead, received_at: str
    ) -> tuple[list[Appended], list[StoredRow]]:
        stored = self._existing([index["record_id"] for index, _ in prepared])
        results, rows = [], []
        seq, prev = head.seq, head.hash
        for index, text in prepared:
            rid = index["record_id"]
            if rid in stored:
                known_seq, known_text = stored[rid]
                same = known_text == text or index["kind"] == ITEM_CONTEXT  # its id is its content's digest
                results.append(Appended(rid, DUPLICATE if same else CONFLICT, known_seq))
                continue
            seq += 1
            digest = link_hash(prev, entry_bytes_of_text(seq, received_at, text))
            rows.append(StoredRow(seq=seq, received_at=received_at, record=text, prev_hash=prev, hash=digest, **index))
            stored[rid] = (seq, text)
            results.append(Appended(rid, ACCEPTED, seq))
            prev = digest
        return results, rows

    def _existing(self, record_ids: list[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        unique = sorted(set(record_ids))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            params = {f"r{i}": rid for i, rid in enumerate(chunk)}
            marks = ", ".join(f":r{i}" for i in range(len(chunk)))
            sql = f"SELECT record_id, seq, record FROM audit_records WHERE record_id IN ({marks})"
            for rid, seq, text in self._run(sql, params):
                found[rid] = (int(seq), text)
        return found

    def _rollback_quietly(self) -> None:
        # no transaction (BEGIN failed) or no connection: nothing to undo; _errors handles a broken link
        with contextlib.suppress(Exception):
            self._run("ROLLBACK", {})

    # -- reads ---------------------------------------------------------------------------------------
    def head(self) -> ChainHead:
        with self._session():
            rows = self._run("SELECT seq, hash FROM audit_head WHERE id = 1", {})
        return head_from_rows(rows)

    def rows(self, query: RowQuery | None = None, *, page_size: int = 2000) -> Iterator[StoredRow]:
        """Stored rows matching the query, in seq order, streamed a page at a time (keyset pagination)."""
        query = query or RowQuery()
        where, params = query.where()
        sql = f"SELECT {_SELECT_COLUMNS} FROM audit_records WHERE {where} ORDER BY seq LIMIT :page_size"
        after = query.after_seq
        while True:
            with self._session():
                page = self._run(sql, {**params, "after_seq": after, "page_size": page_size})
            for values in page:
                yield StoredRow(*values)
            if len(page) < page_size:
                return
            after = int(page[-1][0])

    def count(self) -> int:
        with self._session():
            return int(self._run("SELECT COUNT(*) FROM audit_records", {})[0][0])


def head_from_rows(rows: Sequence[Sequence[Any]]) -> ChainHead:
    if not rows:
        raise DataIntegrityError("audit_head has no row: the chain head was deleted")
    return ChainHead(int(rows[0][0]), rows[0][1])


def _prepare(record: AnyRecord) -> tuple[dict[str, Any], str]:
    """The index columns and the canonical text (encoded once: the chain hash is computed from it)."""
    data = record_json(record)
    return index_of(data), canonical_json(data).decode()
