"""Sealed Parquet files of the event log, on a local path or any pyarrow filesystem."""

from __future__ import annotations

import io
import os
import uuid
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from kfloop.eventlog.copies import preferred_copies
from kfloop.eventlog.wal import TIMESTAMP_COLUMNS, fsync_dir
from kfloop.events.record import EVENT_ARROW_SCHEMA, EVENT_COLUMNS

EVENTS_DIR = "events"
PARTITIONING = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")


def resolve(log_uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path (`.../events`) of a log location."""
    if "://" in log_uri:
        fs, path = pafs.FileSystem.from_uri(log_uri)
    else:
        fs, path = pafs.LocalFileSystem(), str(Path(log_uri).resolve())
    return fs, f"{path.rstrip('/')}/{EVENTS_DIR}"


# The write-ahead form: every column as in the log, but timestamps as epoch microseconds.
_WAL_SCHEMA = pa.schema(
    [pa.field(f.name, pa.int64()) if f.name in TIMESTAMP_COLUMNS else f for f in EVENT_ARROW_SCHEMA]
)


def payloads_table(payloads: bytes) -> pa.Table:
    """Newline-delimited write-ahead JSON payloads as an Arrow table with the log's schema."""
    if not payloads:
        return EVENT_ARROW_SCHEMA.empty_table()
    options = pajson.ParseOptions(explicit_schema=_WAL_SCHEMA, unexpected_field_behavior="error")
    table = pajson.read_json(io.BytesIO(payloads), parse_options=options)
    columns = [table.column(f.name).cast(f.type) for f in EVENT_ARROW_SCHEMA]
    return pa.Table.from_arrays(columns, schema=EVENT_ARROW_SCHEMA)


def arrival_dates(table: pa.Table) -> pa.Array:
    """The arrival date (UTC, YYYY-MM-DD) of each row: the partition it belongs to."""
    day_numbers = pc.divide(pc.cast(table.column("received_at"), pa.int64()), 86_400_000_000)
    return pc.cast(pc.cast(pc.cast(day_numbers, pa.int32()), pa.date32()), pa.string())


def write_sealed(log_uri: str, file_stem: str, table: pa.Table) -> list[str]:
    """Write a table into one Parquet file per arrival date; the same stem overwrites (idempotent re-seal).

    Local files are written under a dot-name (which readers ignore), fsynced, then renamed: a crash leaves
    no file a reader chokes on. Object stores make one PUT visible atomically, so they are written in place.
    """
    fs, base = resolve(log_uri)
    dates = arrival_dates(table)
    distinct = sorted(set(dates.to_pylist()))
    written = []
    for date in distinct:
        rows = table if len(distinct) == 1 else table.filter(pc.equal(dates, date))
        directory = f"{base}/date={date}"
        fs.create_dir(directory, recursive=True)
        final = f"{directory}/{file_stem}.parquet"
        _write_atomically(fs, directory, final, rows)
        written.append(final)
    return written


def _write_atomically(fs: pafs.FileSystem, directory: str, final: str, table: pa.Table) -> None:
    if not isinstance(fs, pafs.LocalFileSystem):
        pq.write_table(table, final, filesystem=fs)
        return
    temp = f"{directory}/.{uuid.uuid4().hex}.tmp"
    pq.write_table(table, temp)
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    fsync_dir(Path(directory))


def sealed_files(log_uri: str, *, dates: list[str] | None = None) -> list[str]:
    """Paths of every sealed Parquet file (optionally only some arrival dates), sorted."""
    fs, base = resolve(log_uri)
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    files = []
    for info in infos:
        name = info.base_name
        if info.type != pafs.FileType.File or name.startswith((".", "_")) or not name.endswith(".parquet"):
            continue
        if dates is not None and not any(f"/date={d}/" in info.path for d in dates):
            continue
        files.append(info.path)
    return sorted(files)


def read_events(
    log_uri: str,
    *,
    columns: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    dates: list[str] | None = None,
    deduplicate: bool = True,
) -> pa.Table:
    """Sealed events as one table, optionally within [since, until) of event time.

    Replicas cannot coordinate on arrival, so copies of an event id across writers are dropped here, by the
    rule of `kfloop.eventlog.copies`: the served copy wins, else the first arrival.
    """
    fs, _ = resolve(log_uri)
    files = sealed_files(log_uri, dates=dates)
    wanted = list(columns) if columns is not None else list(EVENT_COLUMNS)
    if not files:
        return EVENT_ARROW_SCHEMA.empty_table().select(wanted)
    needed = list(dict.fromkeys([*wanted, "event_id", "received_at", "source"])) if deduplicate else wanted
    dataset = ds.dataset(files, schema=EVENT_ARROW_SCHEMA, format="parquet", filesystem=fs)
    table = dataset.to_table(columns=needed, filter=_time_filter(since, until))
    if deduplicate:
        table = preferred_copies(table)
    return table.select(wanted)


def _time_filter(since: datetime | None, until: datetime | None) -> ds.Expression | None:
    expr = None
    if since is not None:
        expr = ds.field("ts") >= pa.scalar(since, type=EVENT_ARROW_SCHEMA.field("ts").type)
    if until is not None:
        upper = ds.field("ts") < pa.scalar(until, type=EVENT_ARROW_SCHEMA.field("ts").type)
        expr = upper if expr is None else expr & upper
    return expr
