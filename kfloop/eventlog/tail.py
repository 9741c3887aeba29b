"""Follow the event log as it is written: every writer's write-ahead segments, line by line.

Readers that need events within milliseconds cannot wait for sealing (up to `segment_max_age_s`), so
`WalTailer.poll()` reads the complete, checksummed lines appended to `{wal_dir}/{writer_id}/seg-*.wal`
since the last poll. Each segment stays open once seen: when its writer seals it (Parquet, then unlink)
the tailer still reads the rest through its open file. A segment created and sealed between two polls
was never opened; a periodic scan of recent sealed files finds it and reads its Parquet instead.

Records come back as in the write-ahead log (timestamps as epoch microseconds). The same event can come
back twice (two writers, or a WAL line and a sealed copy): consumers deduplicate by event_id.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kfloop.eventlog.config import EventLogConfig
from kfloop.eventlog.store import resolve, sealed_files
from kfloop.eventlog.wal import SUFFIX, decode_line
from kfloop.events.record import EVENT_COLUMNS

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20
_SEG_MARK = "-seg-"
_REMEMBER_MS = 3 * 86_400_000  # longer than the two arrival dates the sealed scan lists


class _OpenSegment:
    """A segment being followed: its file handle and the bytes of an incomplete last line."""

    __slots__ = ("fd", "partial", "path")

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd, self.partial = path, fd, b""

    def read_new(self) -> list[bytes]:
        """Complete lines appended since the last read."""
        chunks = [self.partial]
        while chunk := os.read(self.fd, _READ_CHUNK):
            chunks.append(chunk)
        data = b"".join(chunks)
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        return data[:cut].splitlines(keepends=True) if cut else []

    def unlinked(self) -> bool:
        return os.fstat(self.fd).st_nlink == 0


class WalTailer:
    """Polls every writer's write-ahead segments (and recently sealed files it missed) for new records."""

    def __init__(self, config: EventLogConfig, *, sealed_scan_interval_s: float = 1.0) -> None:
        self.config = config
        self.sealed_scan_interval_s = sealed_scan_interval_s
        self._open: dict[tuple[str, str], _OpenSegment] = {}
        self._seen_segments: set[tuple[str, str]] = set()  # (writer, stem): opened at some point
        self._seen_sealed: set[str] = set()
        self._last_scan = 0.0
        self.corrupt_lines = 0

    # -- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        for segment in self._open.values():
            os.close(segment.fd)
        self._open.clear()

    def __enter__(self) -> WalTailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mark_sealed_read(self, paths: list[str]) -> None:
        """Sealed files the caller has read itself (e.g. on start): never read them again here."""
        self._seen_sealed.update(paths)

    # -- polling ------------------------------------------------------------------------------------
    def poll(self) -> list[dict[str, Any]]:
        """Records appended since the last poll (and those of missed sealed segments)."""
        self._open_new_segments()
        records = []
        for key, segment in list(self._open.items()):
            for line in segment.read_new():
                record = decode_line(line)
                if record is None:
                    self.corrupt_lines += 1
                    log.warning("%s: skipped a corrupt write-ahead line", segment.path)
                else:
                    records.append(record)
            if not segment.partial and segment.unlinked():
                os.close(segment.fd)  # sealed and read to the end
                del self._open[key]
        now = time.monotonic()
        if now - self._last_scan >= self.sealed_scan_interval_s:
            self._last_scan = now
            records.extend(self._missed_sealed_records())
        return records

    def _open_new_segments(self) -> None:
        wal_dir = self.config.wal_dir
        try:
            writers = [e for e in os.scandir(wal_dir) if e.is_dir()]
        except FileNotFoundError:
            return
        for writer in writers:
            try:
                entries = sorted(e.name for e in os.scandir(writer.path) if e.name.endswith(SUFFIX))
            except FileNotFoundError:
                continue
            for name in entries:
                key = (writer.name, name[: -len(SUFFIX)])
                if key in self._seen_segments:
                    continue
                path = Path(writer.path) / name
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue  # sealed meanwhile: the sealed-file scan reads it
                self._seen_segments.add(key)
                self._open[key] = _OpenSegment(path, fd)

    def _missed_sealed_records(self) -> list[dict[str, Any]]:
        today = datetime.now(UTC).date()
        dates = [(today - timedelta(days=d)).isoformat() for d in (1, 0)]
        records: list[dict[str, Any]] = []
        listed = sealed_files(self.config.log_uri, dates=dates)
        self._forget_old(set(listed))
        for path in listed:
            if path in self._seen_sealed:
                continue
            self._seen_sealed.add(path)
            if sealed_segment_of(path) in self._seen_segments:
                continue  # read through its write-ahead segment
            log.info("reading %s: its segment was sealed before it was seen", path)
            records.extend(read_sealed_file(self.config.log_uri, path))
        return records

    def _forget_old(self, recent_sealed: set[str]) -> None:
        # Only recent partitions are scanned, so older names need not be remembered (bounded memory).
        self._seen_sealed &= recent_sealed
        horizon_ms = int(time.time() * 1000) - _REMEMBER_MS
        self._seen_segments = {
            key for key in self._seen_segments if key in self._open or _segment_stamp_ms(key[1]) >= horizon_ms
        }


def _segment_stamp_ms(stem: str) -> int:
    """Creation time in a segment name `seg-{epoch ms}-{counter}` (0 if the name is not of that form)."""
    parts = stem.split("-")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


def sealed_segment_of(path: str) -> tuple[str, str] | None:
    """(writer_id, segment stem) of a sealed file `{writer_id}-{stem}.parquet`."""
    name = path.rsplit("/", 1)[-1].removesuffix(".parquet")
    writer, mark, rest = name.rpartition(_SEG_MARK)
    return (writer, f"seg-{rest}") if mark else None


def read_sealed_file(log_uri: str, path: str) -> list[dict[str, Any]]:
    """One sealed file's records, timestamps as epoch microseconds."""
    fs, _ = resolve(log_uri)
    table = pq.read_table(path, filesystem=fs, columns=list(EVENT_COLUMNS))
    for column in ("ts", "received_at"):
        if column in table.column_names:
            index = table.column_names.index(column)
            table = table.set_column(index, column, table.column(column).cast(pa.int64()))
    return table.to_pylist()
