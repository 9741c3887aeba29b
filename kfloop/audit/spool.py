"""The predictor's durable local spool: records are fsynced to local files before the decision returns,
then shipped to the audit sink, which may be slow, restarting or unreachable meanwhile.

Files: `{n:012d}.spool` (CRC-framed JSON lines, framed as the event log's WAL), `offset.json` (the first record
the sink has not acknowledged; replaced atomically), `spool.lock` (one owner process at a time). The offset
only moves after the sink acknowledges, so a crash resends at most one batch, which the sink deduplicates.

More than one consumer can read the spool (the predictor's decisions also become impression events): each is a
named cursor with its own offset file, `offset.{name}.json`, and a segment is deleted once every cursor has
passed it. The sink's cursor is `SINK`, its file `offset.json`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kfloop.audit.canonical import canonical_json
from kfloop.audit.record import AnyRecord, Decision, record_json
from kfloop.errors import KfloopError
from kfloop.framing import frame, fsync_dir, unframe

log = logging.getLogger(__name__)

SUFFIX = ".spool"
SINK = "sink"
OFFSET_FILE = "offset.json"
LOCK_FILE = "spool.lock"
CORRUPT_FILE = "corrupt.lines"


class SpoolLocked(KfloopError):
    """Another process owns this spool directory."""


@dataclass(frozen=True, order=True)
class Position:
    """A byte offset in a spool segment."""

    segment: int
    offset: int


@dataclass(frozen=True)
class SpoolBatch:
    payloads: list[bytes]
    """Each record's JSON, as spooled (its line's checksum checked): shipped as it is, never decoded and
    encoded again (for a batch of 500 decisions, ~15 ms of the predictor's CPU with its GIL held)."""
    end: Position

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records decoded (those that are JSON objects)."""
        return [r for r in map(decode_payload, self.payloads) if r is not None]


def encode(record: dict[str, Any]) -> bytes:
    """One checksummed line, framed as the event log's write-ahead segments are. The line needs no canonical
    form (the sink hashes its own canonical bytes): orjson, ~10x faster than json with sorted keys; json (which
    refuses NaN, as validation did before) for what orjson refuses, integers beyond 64 bits."""
    try:
        return frame(orjson.dumps(record))
    except TypeError:
        return frame(canonical_json(record))


def _line(record: AnyRecord) -> bytes:
    """A record's spool line. A decision's inputs (~1,000 values) are JSON already (checked when it was
    built), so they go to orjson as they are: pydantic's json-mode dump walks every one (5x the rest)."""
    if isinstance(record, Decision):
        data = record.model_dump(mode="json", exclude={"inputs"})
        data["inputs"] = record.inputs
        return encode(data)
    return encode(record_json(record))


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record on a whole line, or None if its checksum or JSON fails."""
    payload = unframe(line)
    return None if payload is None else decode_payload(payload)


def decode_payload(payload: bytes) -> dict[str, Any] | None:
    """A spooled record's JSON decoded, or None if it is not a JSON object."""
    try:
        record = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:  # orjson refuses integers beyond 64 bits, which Python's json (and the spool's writer) allow
            record = json.loads(payload)
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


class Spool:
    """Append (fsync'd) on the predictor's side; read and commit on the shipper's. Thread-safe."""

    def __init__(
        self, directory: Path, *, segment_max_bytes: int = 64 * 1024 * 1024, cursors: Sequence[str] = (SINK,)
    ) -> None:
        self.dir = directory
        self.segment_max_bytes = segment_max_bytes
        self.cursors = tuple(dict.fromkeys(cursors))
        """The consumers: each reads every record, and a segment stays until all have shipped it."""
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._active = 0
        self._durable_size = 0  # bytes of the active segment covered by an fsync
        self._positions = dict.fromkeys(self.cursors, Position(1, 0))
        self.corrupt_lines = 0
        self._corrupt_seen: set[tuple[int, int]] = set()

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Take ownership, drop a torn tail left by a crash, and resume from the committed offset."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        segments = self._segments()
        self._active = segments[-1] if segments else 1
        path = self._path(self._active)
        self._durable_size = _truncate_torn_tail(path) if path.exists() else 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.dir)
        self._positions = {cursor: self._load_position(cursor, segments) for cursor in self.cursors}

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
            self._appended.notify_all()

    def __enter__(self) -> Spool:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_lock(self) -> None:
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(f"spool {self.dir} is in use by another process") from None
        self._lock_fd = fd

    # -- appending -----------------------------------------------------------------------------------
    def append(self, records: Sequence[AnyRecord]) -> None:
        """Make records durable locally (returns after fsync). Validate before: the spool trusts them."""
        data = b"".join(_line(r) for r in records)
        if not data:
            return
        with self._lock:
            if self._fd is None:
                raise KfloopError(f"spool {self.dir} is not open")
            if self._durable_size and self._durable_size + len(data) > self.segment_max_bytes:
                self._roll()
            _write_all(self._fd, data)
            os.fsync(self._fd)
            self._durable_size += len(data)
            self._appended.notify_all()

    def _roll(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._active += 1
        self._fd = os.open(self._path(self._active), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.dir)
        self._durable_size = 0

    # -- shipping ------------------------------------------------------------------------------------
    def wake(self) -> None:
        """Wake a shipper sleeping in wait_for_records (e.g. to stop it)."""
        with self._lock:
            self._appended.notify_all()

    def cursor(self, name: str) -> SpoolCursor:
        """One consumer's view (what a Shipper reads), for a cursor named when the spool was made."""
        if name not in self.cursors:
            raise KfloopError(f"spool {self.dir} has no cursor {name!r} (it has {', '.join(self.cursors)})")
        return SpoolCursor(self, name)

    def wait_for_records(self, timeout: float, cursor: str = SINK) -> None:
        """Sleep until something is appended (or the timeout passes)."""
        with self._lock:
            if not self._has_pending(cursor):
                self._appended.wait(timeout)

    def read_batch(self, max_records: int, cursor: str = SINK) -> SpoolBatch | None:
        """Up to max_records durable records from the cursor's committed offset on; None when all are shipped."""
        with self._lock:
            position, active, durable = self._positions[cursor], self._active, self._durable_size
        start = position
        payloads: list[bytes] = []
        while True:
            limit = durable if position.segment == active else None
            position = self._read_segment(position, limit, max_records - len(payloads), payloads)
            if len(payloads) >= max_records or position.segment >= active:
                break
            position = Position(position.segment + 1, 0)  # an older segment, read to its end: next one
        if position == start:
            return None
        return SpoolBatch(payloads, position)  # may hold no records: it then only skips spent segments

    def _read_segment(self, start: Position, limit: int | None, wanted: int, out: list[bytes]) -> Position:
        """Append up to `wanted` records' JSON from one segment to `out`; return where reading stopped."""
        path = self._path(start.segment)
        if not path.exists():
            return start
        offset = start.offset
        with open(path, "rb") as stream:
            stream.seek(offset)
            while wanted > 0 and (limit is None or offset < limit):
                line = stream.readline()
                if not line.endswith(b"\n"):
                    break  # end of the file (or a torn tail beyond the durable end)
                payload = unframe(line)
                if payload is None:
                    self._keep_corrupt(line, start.segment, offset)
                offset += len(line)
                if payload is None:
                    continue
                out.append(payload)
                wanted -= 1
        return Position(start.segment, offset)

    def commit(self, position: Position, cursor: str = SINK) -> None:
        """Record that the cursor's consumer acknowledged everything before `position`; delete the segments
        every cursor has passed."""
        offset_file = _offset_file(cursor)
        tmp = self.dir / (offset_file + ".tmp")
        with open(tmp, "w") as stream:
            json.dump({"segment": position.segment, "offset": position.offset}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, self.dir / offset_file)
        with self._lock:
            self._positions[cursor] = position
            shipped = min(p.segment for p in self._positions.values())
            stale = [n for n in self._segments() if n < shipped]
        for n in stale:
            self._path(n).unlink(missing_ok=True)
        fsync_dir(self.dir)

    def pending_bytes(self, cursor: str = SINK) -> int:
        """Bytes appended but not yet acknowledged by the cursor's consumer."""
        with self._lock:
            position, active, durable = self._positions[cursor], self._active, self._durable_size
        total = -position.offset
        for n in self._segments():
            if n >= position.segment:
                total += durable if n == active else self._path(n).stat().st_size
        return max(total, 0)

    def _has_pending(self, cursor: str) -> bool:
        return self._positions[cursor] != Position(self._active, self._durable_size)

    # -- files ---------------------------------------------------------------------------------------
    def _path(self, segment: int) -> Path:
        return self.dir / f"{segment:012d}{SUFFIX}"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob(f"*{SUFFIX}") if p.stem.isdigit())

    def _load_position(self, cursor: str, segments: list[int]) -> Position:
        try:
            saved = json.loads((self.dir / _offset_file(cursor)).read_text())
            position = Position(int(saved["segment"]), int(saved["offset"]))
        except FileNotFoundError:
            return Position(segments[0] if segments else self._active, 0)
        if position.segment == self._active:
            # the tail past the offset may have been lost with the page cache: never point beyond the file
            position = Position(position.segment, min(position.offset, self._durable_size))
        return position

    def _keep_corrupt(self, line: bytes, segment: int, offset: int) -> None:
        """A whole line whose checksum fails (disk corruption): keep its bytes for a human, skip it."""
        if (segment, offset) in self._corrupt_seen:  # read again after a failed delivery
            return
        self._corrupt_seen.add((segment, offset))
        self.corrupt_lines += 1
        log.error("spool %s: segment %d has a corrupt line; kept in %s", self.dir, segment, CORRUPT_FILE)
        with open(self.dir / CORRUPT_FILE, "ab") as stream:
            stream.write(line)


class SpoolCursor:
    """One consumer's view of a spool: what `Shipper` reads and commits through."""

    def __init__(self, spool: Spool, name: str) -> None:
        self.spool, self.name, self.dir = spool, name, spool.dir

    def read_batch(self, max_records: int) -> SpoolBatch | None:
        return self.spool.read_batch(max_records, self.name)

    def commit(self, position: Position) -> None:
        self.spool.commit(position, self.name)

    def wait_for_records(self, timeout: float) -> None:
        self.spool.wait_for_records(timeout, self.name)

    def wake(self) -> None:
        self.spool.wake()

    def pending_bytes(self) -> int:
        return self.spool.pending_bytes(self.name)


def _offset_file(cursor: str) -> str:
    return OFFSET_FILE if cursor == SINK else f"offset.{cursor}.json"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _truncate_torn_tail(path: Path) -> int:
    """Cut a partial last line (a crash mid-append; it was never acknowledged). Returns the size kept."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as stream:
        keep = size
        chunk = 65536
        while keep > 0:  # find the last newline
            start = max(0, keep - chunk)
            stream.seek(start)
            data = stream.read(keep - start)
            index = data.rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                break
            keep = start
        if keep != size:
            stream.truncate(keep)
            stream.flush()
            os.fsync(stream.fileno())
    return keep
