"""Compliance exports (JSON Lines, CSV, Parquet), streamed; every row carries seq, prev_hash and hash.

A row holds the index columns, `received_at`, the record's canonical JSON (`record`: an object in JSON
Lines, a JSON string in CSV and Parquet) and its chain links, which is all `verify` needs to recompute it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kfloop.audit.canonical import parse_rfc3339, rfc3339
from kfloop.audit.chain import COLUMNS, StoredRow
from kfloop.audit.verify import Problem
from kfloop.errors import InvalidInput

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_OPTIONAL = ("model_version", "variant", "user_id")  # empty in CSV means absent (none of them may be "")
_TIMESTAMPS = ("ts", "received_at")
_TEXT = ("record_id", "kind", "request_id", "ts", "received_at", "prev_hash", "hash")
PARQUET_BATCH = 10_000


@dataclass
class ExportSummary:
    format: str
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    gaps: int = 0
    """Seq jumps between consecutive rows (a filtered export): verify it with allow_gaps."""

    def count(self, row: StoredRow) -> None:
        self.rows += 1
        self.first_seq = row.seq if self.first_seq is None else self.first_seq
        if self.last_seq is not None and row.seq != self.last_seq + 1:
            self.gaps += 1
        self.last_seq = row.seq


def format_of(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"cannot tell the format of {path} from its name; pass --format ({', '.join(FORMATS)})")
    return fmt


# -- writing ------------------------------------------------------------------------------------------
def write_export(rows: Iterable[StoredRow], out: Path | IO[str], fmt: str) -> ExportSummary:
    """Write rows to a file (atomically: a temporary file renamed at the end) or to a text stream."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    summary = ExportSummary(fmt)
    if not isinstance(out, Path):
        if fmt == "parquet":
            raise InvalidInput("a parquet export needs an output file")
        _write_text(rows, out, fmt, summary)
        return summary
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    if fmt == "parquet":
        _write_parquet(rows, partial, summary)
    else:
        with open(partial, "w", encoding="utf-8", newline="") as stream:
            _write_text(rows, stream, fmt, summary)
    os.replace(partial, out)
    return summary


def _write_text(rows: Iterable[StoredRow], stream: IO[str], fmt: str, summary: ExportSummary) -> None:
    if fmt == "jsonl":
        for row in rows:
            stream.write(jsonl_line(row))
            summary.count(row)
        return
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if v is None else v for v in (getattr(row, c) for c in COLUMNS)])
        summary.count(row)


def jsonl_line(row: StoredRow) -> str:
    """One JSON object a line; the record's canonical text is spliced in as an object, not re-encoded."""
    head = {c: getattr(row, c) for c in COLUMNS if c != "record"}
    return json.dumps(head)[:-1] + ',"record":' + row.record + "}\n"


def _parquet_schema() -> Any:
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    types = {"seq": pa.int64(), "ts": utc, "received_at": utc}
    return pa.schema([pa.field(c, types.get(c, pa.string()), nullable=c in _OPTIONAL) for c in COLUMNS])


def _write_parquet(rows: Iterable[StoredRow], path: Path, summary: ExportSummary) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    with pq.ParquetWriter(str(path), schema) as writer:
        batch: list[StoredRow] = []
        for row in rows:
            batch.append(row)
            summary.count(row)
            if len(batch) >= PARQUET_BATCH:
                writer.write_table(_table(batch, schema, pa))
                batch = []
        if batch or summary.rows == 0:
            writer.write_table(_table(batch, schema, pa))


def _table(batch: list[StoredRow], schema: Any, pa: Any) -> Any:
    columns = {}
    for column in COLUMNS:
        values = [getattr(row, column) for row in batch]
        if column in _TIMESTAMPS:
            values = [parse_rfc3339(v) for v in values]
        columns[column] = pa.array(values, type=schema.field(column).type)
    return pa.table(columns, schema=schema)


# -- reading (for verify) -----------------------------------------------------------------------------
def read_export(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    """Each row as (line, fields with `record` parsed), or (line, Problem) when a line cannot be read.
    `line` is the file's line number for jsonl and csv, the 1-based row number for parquet."""
    readers = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}
    if fmt not in readers:
        raise InvalidInput(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return readers[fmt](path)


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    with open(path, encoding="utf-8") as stream:
        for line, text in enumerate(stream, 1):
            try:
                obj = json.loads(text)
            except ValueError as exc:
                yield line, Problem(None, None, None, f"not valid JSON: {exc}", line)
                continue
            if not isinstance(obj, dict):
                yield line, Problem(None, None, None, "not a JSON object", line)
                continue
            yield line, _fields(obj, line)


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            yield 1, Problem(None, None, None, f"header lacks column(s) {', '.join(missing)}", 1)
            return
        for values in reader:
            raw: dict[str, Any] = dict(values)
            for column in _OPTIONAL:
                raw[column] = raw[column] or None
            yield reader.line_num, _fields(raw, reader.line_num)


def _read_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(str(path))
    missing = [c for c in COLUMNS if c not in parquet.schema_arrow.names]
    if missing:
        yield 0, Problem(None, None, None, f"lacks column(s) {', '.join(missing)}", 0)
        return
    line = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, columns=list(COLUMNS)):
        for raw in batch.to_pylist():
            line += 1
            for column in _TIMESTAMPS:
                if raw[column] is not None and not isinstance(raw[column], str):
                    raw[column] = rfc3339(raw[column])
            yield line, _fields(raw, line)


def _fields(raw: Mapping[str, Any], line: int) -> dict[str, Any] | Problem:
    """Typed row fields, or the Problem naming the first column that is missing or of the wrong type."""
    ident = (raw.get("seq"), raw.get("request_id"), raw.get("record_id"))

    def problem(reason: str) -> Problem:
        seq = ident[0] if isinstance(ident[0], int) else None
        return Problem(seq, _str_or_none(ident[1]), _str_or_none(ident[2]), reason, line)

    missing = [c for c in COLUMNS if c not in raw]
    if missing:
        return problem(f"lacks column(s) {', '.join(missing)}")
    fields = {c: raw[c] for c in COLUMNS}
    seq = fields["seq"]
    if isinstance(seq, str):
        try:
            seq = int(seq)
        except ValueError:
            return problem(f"column seq is {seq!r}, not an integer")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return problem(f"column seq is {seq!r}, not an integer")
    fields["seq"] = seq
    ident = (seq, *ident[1:])
    for column in _TEXT:
        if not isinstance(fields[column], str):
            return problem(f"column {column} is {fields[column]!r}, not text")
    if isinstance(fields["record"], str):
        try:
            fields["record"] = json.loads(fields["record"])
        except ValueError as exc:
            return problem(f"column record is not valid JSON: {exc}")
    return fields


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def export_to_string(rows: Iterable[StoredRow], fmt: str) -> str:
    """A text export in memory (small exports, tests)."""
    buffer = io.StringIO()
    write_export(rows, buffer, fmt)
    return buffer.getvalue()
