"""Write-ahead segments: one JSON record a line, each line prefixed by its CRC32.

A line is acknowledged only after the fsync that covers it, so a crash can tear at most the unacknowledged
tail; readers stop trusting a segment at the first line whose checksum fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kfloop.framing import frame, fsync_dir, unframe

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
TIMESTAMP_COLUMNS = ("ts", "received_at")
SUFFIX = ".wal"


def to_micros(value: datetime) -> int:
    return (value - _EPOCH) // _US


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_line(record: dict[str, Any]) -> bytes:
    flat = dict(record)
    for column in TIMESTAMP_COLUMNS:
        flat[column] = to_micros(flat[column])
    return frame(_ENCODER.encode(flat).encode())


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record on this line, or None if the line is torn or its checksum fails."""
    payload = unframe(line)
    if payload is None:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return None


def read_segment(path: Path) -> tuple[list[dict[str, Any]], int]:
    """All intact records of a segment (timestamps as epoch microseconds) and how many lines were bad."""
    records, bad = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            record = decode_line(line)
            if record is None:
                bad += 1
            else:
                records.append(record)
    return records, bad


def intact_payloads(path: Path) -> tuple[bytes, int]:
    """The JSON payloads of a segment's intact lines, newline-delimited, and how many lines were bad.

    Sealing parses these in bulk with Arrow's JSON reader (C++, outside the GIL) rather than line by line.
    """
    payloads, bad = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            payload = unframe(line)
            if payload is None:
                bad += 1
            else:
                payloads.append(payload)
    return b"\n".join(payloads) + (b"\n" if payloads else b""), bad


class Segment:
    """An open write-ahead segment, appended to by one writer thread."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / f"{name}{SUFFIX}"
        self.name = name
        self.events = 0
        self.opened_at = datetime.now(UTC)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(directory)  # the segment's directory entry must survive a crash too

    def append(self, lines: list[bytes]) -> None:
        data = b"".join(lines)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self.events += len(lines)

    def close(self) -> None:
        os.close(self._fd)


def segments_in(directory: Path) -> Iterator[Path]:
    """Segment files in creation order (names sort by creation time)."""
    if directory.is_dir():
        yield from sorted(p for p in directory.iterdir() if p.suffix == SUFFIX)
