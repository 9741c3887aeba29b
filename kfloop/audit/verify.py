"""Recompute the chain over a store or an export file and name the first record that does not fit."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kfloop.audit.chain import GENESIS, INDEX_COLUMNS, StoredRow, entry_bytes, link_hash
from kfloop.audit.record import ITEM_CONTEXT, context_digest, context_ref, index_of
from kfloop.audit.store.base import RowQuery, SqlStore
from kfloop.errors import DataIntegrityError


@dataclass(frozen=True)
class Problem:
    """The first record that does not fit the chain, and why. `line` is its line (row) in an export."""

    seq: int | None
    request_id: str | None
    record_id: str | None
    reason: str
    line: int | None = None


@dataclass
class VerifyReport:
    source: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    gaps: int = 0
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def summary(self) -> str:
        if self.problem is None:
            return f"OK: {self.records} records (seq {self.first_seq}..{self.last_seq}) in {self.source}"
        p = self.problem
        where = f"seq {p.seq}" + (f", request_id {p.request_id}" if p.request_id else "")
        where += f", line {p.line}" if p.line is not None else ""
        return f"FAILED at {where}: {p.reason}"


class ChainVerifier:
    """Checks rows fed in order. `from_genesis`: the first row must be seq 1 (a whole store).
    `allow_gaps`: seq may jump (a filtered export); rows are still checked one by one."""

    def __init__(self, report: VerifyReport, *, from_genesis: bool, allow_gaps: bool) -> None:
        self.report = report
        self.from_genesis = from_genesis
        self.allow_gaps = allow_gaps
        self.contexts: set[str] = set()
        """Item contexts seen so far: a decision must come after the context it refers to."""

    def feed(self, row: Mapping[str, Any], line: int | None = None) -> Problem | None:
        """Check one row (its `record` already parsed from JSON); returns the problem, if any."""
        problem = self._check(row)
        if problem is not None:
            problem = Problem(row.get("seq"), row.get("request_id"), row.get("record_id"), problem, line)
            self.report.problem = problem
            return problem
        if row["kind"] == ITEM_CONTEXT:
            self.contexts.add(row["record"]["context_id"])
        r = self.report
        r.records += 1
        r.first_seq = row["seq"] if r.first_seq is None else r.first_seq
        r.last_seq, r.last_hash = row["seq"], row["hash"]
        return None

    def _check(self, row: Mapping[str, Any]) -> str | None:
        return self._check_position(row) or _check_hash(row) or _check_columns(row) or self._check_context(row)

    def _check_context(self, row: Mapping[str, Any]) -> str | None:
        record = row["record"]
        if row["kind"] == ITEM_CONTEXT:
            try:
                digest = context_digest(record.get("content"))
            except (ValueError, TypeError) as exc:
                return f"cannot recompute the item context's digest: {exc}"
            if digest != record.get("context_id"):
                return "item context content does not match its context_id: the content was altered"
            return None
        ref = context_ref(record)
        if ref is not None and ref not in self.contexts:
            return f"refers to item context {ref}, which is not among the records before it (deleted or not exported)"
        return None

    def _check_position(self, row: Mapping[str, Any]) -> str | None:
        seq, last = row["seq"], self.report.last_seq
        expected = 1 if last is None else last + 1
        if last is not None and seq <= last:
            return f"out of order: seq {seq} comes after seq {last} (rows reordered or repeated)"
        if seq > expected and not self.allow_gaps and (last is not None or self.from_genesis):
            missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
            return f"gap: {missing} missing before this record (deleted)"
        if seq == 1 and row["prev_hash"] != GENESIS:
            return "prev_hash of seq 1 is not the genesis value"
        if last is not None and seq == expected and row["prev_hash"] != self.report.last_hash:
            return (
                f"prev_hash does not match the hash of seq {last}: seq {last} was altered and its hash "
                "recomputed, or this record's prev_hash was altered"
            )
        return None


def _check_hash(row: Mapping[str, Any]) -> str | None:
    try:
        digest = link_hash(row["prev_hash"], entry_bytes(row["seq"], row["received_at"], row["record"]))
    except (ValueError, TypeError) as exc:
        return f"cannot recompute the hash: {exc}"
    if digest != row["hash"]:
        return "hash does not match the record: its content, seq, received_at or prev_hash was altered"
    return None


def _check_columns(row: Mapping[str, Any]) -> str | None:
    record = row["record"]
    if not isinstance(record, dict):
        return "record is not a JSON object"
    derived = index_of(record)
    for column in INDEX_COLUMNS:
        if row.get(column) != derived[column]:
            return f"column {column} is {row.get(column)!r} but the record says {derived[column]!r}"
    return None


def stored_row_fields(row: StoredRow) -> dict[str, Any] | str:
    """A store row with its record parsed, or the reason it cannot be."""
    fields = row.as_dict()
    try:
        fields["record"] = json.loads(row.record)
    except ValueError as exc:
        return f"record is not valid JSON: {exc}"
    return fields


def verify_store(store: SqlStore, *, source: str | None = None) -> VerifyReport:
    """Walk the whole chain (streamed) up to the head read at the start; compare the end with the head."""
    report = VerifyReport(source=source or repr(store))
    try:
        head = store.head()
    except DataIntegrityError as exc:
        report.problem = Problem(None, None, None, exc.message)
        return report
    verifier = ChainVerifier(report, from_genesis=True, allow_gaps=False)
    for row in store.rows(RowQuery(up_to_seq=head.seq)):
        fields = stored_row_fields(row)
        if isinstance(fields, str):
            report.problem = Problem(row.seq, row.request_id, row.record_id, fields)
            return report
        if verifier.feed(fields) is not None:
            return report
    last_seq, last_hash = report.last_seq or 0, report.last_hash or GENESIS
    if last_seq != head.seq:
        report.problem = Problem(
            last_seq + 1,
            None,
            None,
            f"missing: the head says the chain ends at seq {head.seq}, the records end "
            f"at seq {last_seq} (records deleted from the end)",
        )
    elif last_hash != head.hash:
        report.problem = Problem(last_seq, None, None, "the chain head's hash differs from the last record's")
    else:
        report.problem = _beyond_head(store, head.seq)
    return report


def _beyond_head(store: SqlStore, head_seq: int) -> Problem | None:
    """A record past the head the walk started from is fine if a writer appended it since (the head moved
    on); otherwise it was inserted outside the chain, or the head was set back."""
    beyond = next(store.rows(RowQuery(after_seq=head_seq), page_size=1), None)
    if beyond is None or beyond.seq <= store.head().seq:
        return None
    return Problem(
        beyond.seq, beyond.request_id, beyond.record_id, "record beyond the chain head (inserted outside the chain)"
    )


def verify_rows(
    rows: Iterable[tuple[int, Mapping[str, Any] | Problem]], *, source: str, allow_gaps: bool
) -> VerifyReport:
    """Verify parsed export rows, in file order: (line, fields), or (line, Problem) for an unreadable line."""
    report = VerifyReport(source=source)
    verifier = ChainVerifier(report, from_genesis=False, allow_gaps=allow_gaps)
    for line, fields in rows:
        if isinstance(fields, Problem):
            report.problem = fields
            return report
        if report.last_seq is not None and fields["seq"] > report.last_seq + 1:
            report.gaps += 1
        if verifier.feed(fields, line) is not None:
            return report
    return report


def verify_file(path: Path, *, fmt: str | None = None, allow_gaps: bool = False) -> VerifyReport:
    """Verify an export (jsonl, csv or parquet; the format from the file name unless given)."""
    from kfloop.audit.export import format_of, read_export

    fmt = fmt or format_of(path)
    return verify_rows(read_export(path, fmt), source=str(path), allow_gaps=allow_gaps)
