"""The hash chain: each stored record's hash covers the previous hash, its position, arrival time and content.

    hash(n) = sha256(bytes.fromhex(hash(n-1)) || canonical_json({"seq": n, "received_at": ..., "record": ...}))

with hash(0) = GENESIS. Changing any record, its seq or its arrival time changes its hash; rewriting that
hash as well breaks the link from the next record, so an edit shows up at the first record touched.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from kfloop.audit.canonical import canonical_json

GENESIS = "0" * 64
COLUMNS = (
    "seq",
    "record_id",
    "kind",
    "request_id",
    "ts",
    "model_version",
    "variant",
    "user_id",
    "received_at",
    "record",
    "prev_hash",
    "hash",
)
INDEX_COLUMNS = ("record_id", "kind", "request_id", "ts", "model_version", "variant", "user_id")


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One record as stored and exported: its index columns, canonical JSON text and chain links."""

    seq: int
    record_id: str
    kind: str
    request_id: str
    ts: str
    model_version: str | None
    variant: str | None
    user_id: str | None
    received_at: str
    record: str
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record's seq and hash (seq 0 and GENESIS for an empty chain)."""

    seq: int
    hash: str


def entry_bytes(seq: int, received_at: str, record: Any) -> bytes:
    return canonical_json({"seq": seq, "received_at": received_at, "record": record})


def entry_bytes_of_text(seq: int, received_at: str, record_text: str) -> bytes:
    """`entry_bytes` of a record whose canonical text is at hand (byte for byte the same): the writer encodes
    each record once instead of twice. Keys in canonical order: received_at, record, seq."""
    return b"".join(
        (b'{"received_at":', canonical_json(received_at), b',"record":', record_text.encode(), b',"seq":', b"%d}" % seq)
    )


def link_hash(prev_hash: str, entry: bytes) -> str:
    """Raises ValueError if prev_hash is not hex."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + entry).hexdigest()
