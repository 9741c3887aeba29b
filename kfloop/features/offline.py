"""Offline feature tables, the Parquet files Feast's FileSources read.

Aggregates: the event log replayed in event-time order through the same `Aggregator` the feature updater
uses. A row (entity, event_timestamp, values) is written whenever a view's values change: after the
events at a time, and when a bucket leaves a window. So the latest row at or before any time t holds
exactly the values as of t, and values decay offline as they do online. Each key's first row holds its
empty values at STATIC_TIMESTAMP (what it was before any event; Feast's file store needs it, see emit).

Static context: the OBD user features per cohort and the OBD item context, stamped STATIC_TIMESTAMP.
"""

from __future__ import annotations

import csv
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kfloop.eventlog import EventLogConfig, read_events
from kfloop.eventlog.copies import supersedes
from kfloop.eventlog.tail import WalTailer
from kfloop.eventlog.wal import to_micros
from kfloop.features import names
from kfloop.features.aggregates import EVENT_FIELDS, Aggregator, Key, entity_of
from kfloop.features.config import AggregationConfig, FeaturesConfig

log = logging.getLogger(__name__)

STATIC_TIMESTAMP_US = to_micros(datetime(2000, 1, 1, tzinfo=UTC))
_TS = pa.timestamp("us", tz="UTC")
_ARROW = {names.INT64: pa.int64(), names.FLOAT64: pa.float64(), names.STRING: pa.string()}
_KEYS = {
    names.USER_CONTEXT: (names.USER_ID,),
    names.ITEM_CONTEXT: (names.ITEM_ID,),
    names.USER_IMPLICIT: (names.USER_ID,),
    names.USER_EXPLICIT: (names.USER_ID,),
    names.USER_ITEM_IMPLICIT: (names.USER_ID, names.ITEM_ID),
    names.USER_ITEM_EXPLICIT: (names.USER_ID, names.ITEM_ID),
}

Row = dict[str, Any]


# -- the log ----------------------------------------------------------------------------------------
def log_events(config: EventLogConfig, *, since_us: int | None = None, include_wal: bool = True) -> list[Row]:
    """Every event of the log (sealed Parquet, plus the write-ahead segments not sealed yet), each event_id
    once (the copy `kfloop.eventlog.copies` prefers), with ts in epoch microseconds, sorted by (ts, event_id)."""
    events = sealed_events(config.log_uri, since_us=since_us)
    if include_wal:
        kept = {e["event_id"]: index for index, e in enumerate(events)}
        with WalTailer(config) as tailer:
            for record in tailer.poll():
                if since_us is not None and record["ts"] < since_us:
                    continue
                index = kept.get(record["event_id"])
                if index is None:
                    kept[record["event_id"]] = len(events)
                    events.append(record)
                elif supersedes(record["source"], events[index]["source"]):
                    events[index] = record
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events


def sealed_events(log_uri: str, *, since_us: int | None = None, dates: list[str] | None = None) -> list[Row]:
    since = None if since_us is None else datetime.fromtimestamp(since_us / 1e6, tz=UTC)
    table = read_events(log_uri, columns=[*EVENT_FIELDS, "source"], since=since, dates=dates)
    return records_of(table)


def records_of(table: pa.Table) -> list[Row]:
    """Arrow rows of the event log as dicts with ts in epoch microseconds (the write-ahead form)."""
    if "ts" in table.column_names:
        index = table.column_names.index("ts")
        table = table.set_column(index, "ts", table.column("ts").cast(pa.int64()))
    return table.to_pylist()


# -- replay -----------------------------------------------------------------------------------------
def replay(events: Iterable[Row], config: AggregationConfig, *, until_us: int) -> dict[str, list[Row]]:
    """Offline rows of every aggregate view, from events sorted by ts, up to until_us."""
    aggregator = Aggregator(config)
    emitter = _Emitter(aggregator)
    for ts, group in groupby(events, key=lambda e: e["ts"]):
        if ts > until_us:
            break
        for at, keys in aggregator.advance(ts - 1):
            emitter.emit(at, keys)
        changed: set[Key] = set()
        for _, keys in aggregator.advance(ts):  # expiries at exactly ts share the row of the events at ts
            changed |= keys
        changed |= aggregator.ingest(group)
        emitter.emit(ts, changed)
    for at, keys in aggregator.advance(until_us):
        emitter.emit(at, keys)
    return emitter.rows


class _Emitter:
    """Writes a row for a view only when its values differ from the last row written (or from empty)."""

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator
        self.rows: dict[str, list[Row]] = defaultdict(list)
        self._last: dict[tuple[str, Key], dict[str, Any]] = {}
        self._empty = {p: aggregator.math.empty(p) for p in (names.USER_PREFIX, names.USER_ITEM_PREFIX)}

    def emit(self, at_us: int, keys: Iterable[Key]) -> None:
        for key in sorted(keys):
            for view, values in self.aggregator.values(key).items():
                previous = self._last.get((view, key))
                if previous is None:
                    previous = {n: v for n, v in self._empty[key[0]].items() if n in values}
                    if values != previous:
                        # Feast's file offline store drops an entity row whose entity has feature rows only
                        # after it, so every key starts with its empty values at STATIC_TIMESTAMP.
                        self.rows[view].append(
                            {names.EVENT_TIMESTAMP: STATIC_TIMESTAMP_US, **entity_of(key), **previous}
                        )
                if values != previous:
                    self._last[(view, key)] = values
                    self.rows[view].append({names.EVENT_TIMESTAMP: at_us, **entity_of(key), **values})


def aggregate_rows_at(events: Iterable[Row], config: AggregationConfig, now_us: int) -> dict[Key, dict[str, Any]]:
    """Every key's values as of now_us ({view: values} merged), recomputed from events: for tests and checks."""
    aggregator = Aggregator(config)
    for ts, group in groupby(sorted(events, key=lambda e: e["ts"]), key=lambda e: e["ts"]):
        if ts > now_us:
            break
        aggregator.advance_all(ts)
        aggregator.ingest(group)
    aggregator.advance_all(now_us)
    return {key: aggregator.values(key) for key in aggregator.live_keys()}


# -- tables -----------------------------------------------------------------------------------------
def table_schema(view: str, features: names.FeatureSet) -> pa.Schema:
    fields = [pa.field(names.EVENT_TIMESTAMP, _TS, nullable=False)]
    fields += [pa.field(k, pa.string(), nullable=False) for k in _KEYS[view]]
    fields += [pa.field(n, _ARROW[features.kind(n)]) for n in features.view_features(view)]
    return pa.schema(fields)


def rows_to_table(view: str, rows: list[Row], features: names.FeatureSet) -> pa.Table:
    schema = table_schema(view, features)
    arrays = []
    for f in schema:
        values = [row[f.name] for row in rows]
        if f.name == names.EVENT_TIMESTAMP:
            arrays.append(pa.array(values, type=pa.int64()).cast(_TS))
        else:
            arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(path: Path, table: pa.Table) -> None:
    """Replace a Parquet file atomically (readers see the old or the new file, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, temp)
    os.replace(temp, path)


def compute_aggregate_tables(config: FeaturesConfig, *, until: datetime | None = None) -> dict[str, int]:
    """Recompute every aggregate table from the whole log; rows written per view."""
    until_us = to_micros(until or datetime.now(UTC))
    events = log_events(config.event_log)
    rows = replay(events, config.aggregation, until_us=until_us)
    features = config.aggregation.feature_set()
    written = {}
    for view in names.AGGREGATE_VIEWS:
        table = rows_to_table(view, rows.get(view, []), features)
        write_table(config.store.offline_dir / f"{view}.parquet", table)
        written[view] = table.num_rows
    return written


def ensure_offline_tables(config: FeaturesConfig) -> None:
    """Static context tables (rewritten from the OBD files when present) and empty aggregate tables."""
    features = config.aggregation.feature_set()
    offline = config.store.offline_dir
    user_rows, item_rows = obd_context_rows(config.store.obd_data_dir, config.store.obd_log)
    for view, rows in ((names.USER_CONTEXT, user_rows), (names.ITEM_CONTEXT, item_rows)):
        path = offline / f"{view}.parquet"
        if rows or not path.exists():
            write_table(path, rows_to_table(view, rows, features))
    for view in names.AGGREGATE_VIEWS:
        path = offline / f"{view}.parquet"
        if not path.exists():
            write_table(path, rows_to_table(view, [], features))


def obd_context_rows(data_dir: Path, log_name: str) -> tuple[list[Row], list[Row]]:
    """User context (every cohort of both OBD logs) and item context (of `log_name`); empty if not fetched."""
    from kfloop.data.import_obd import USER_FEATURES, user_id_of
    from kfloop.data.obd import LOGS, obd_item_context_csv, obd_log_csv

    users: dict[str, Row] = {}
    for name in LOGS:
        path = obd_log_csv(data_dir, name)
        if not path.is_file():
            log.warning("%s is missing (run `kfloop data fetch`): no user context from it", path)
            continue
        with open(path, newline="") as handle:
            for raw in csv.DictReader(handle):
                values = tuple(raw[f] for f in USER_FEATURES)
                user_id = user_id_of(values)
                if user_id not in users:
                    users[user_id] = {names.EVENT_TIMESTAMP: STATIC_TIMESTAMP_US, names.USER_ID: user_id}
                    users[user_id].update(zip(names.USER_CONTEXT_FEATURES, values, strict=True))
    items = []
    path = obd_item_context_csv(data_dir, log_name)
    if path.is_file():
        with open(path, newline="") as handle:
            for raw in csv.DictReader(handle):
                row = {names.EVENT_TIMESTAMP: STATIC_TIMESTAMP_US, names.ITEM_ID: str(int(raw["item_id"]))}
                row.update({n: float(raw[n]) for n in names.ITEM_NUMERIC_FEATURES})
                row.update({n: raw[n] for n in names.ITEM_CATEGORICAL_FEATURES})
                items.append(row)
    else:
        log.warning("%s is missing (run `kfloop data fetch`): no item context", path)
    return sorted(users.values(), key=lambda r: r[names.USER_ID]), items
