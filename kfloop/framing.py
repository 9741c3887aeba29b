"""Checksummed lines for append-only files (the event log's write-ahead segments, the audit spool).

A line is `crc32-hex SPACE payload NEWLINE`. A crash can tear only the unacknowledged tail; a reader stops
trusting a line whose checksum fails. Standard library only, so any side can import it cheaply.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path


def frame(payload: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def unframe(line: bytes) -> bytes | None:
    """The payload of a whole, intact line; None if the line is torn or its checksum fails."""
    if len(line) < 10 or not line.endswith(b"\n") or line[8:9] != b" ":
        return None
    payload = line[9:-1]
    try:
        intact = int(line[:8], 16) == zlib.crc32(payload)
    except ValueError:
        return None
    return payload if intact else None


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new or renamed file) survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
