"""Import the Open Bandit Dataset sample into the event log as feedback events.

Each row of `{random,bts}/all.csv` (one item shown at one position) becomes one `impression` event, plus
one `click` event where `click == 1`. Every event passes `kfloop.events.parse_event`, like any producer's.

What the data lacks, and how it is derived:

- event_id: deterministic, from the log and the 0-based data row number `n` in `all.csv` (equal to the
  file's unnamed index column): `obd:{log}:all:row{n:06d}:impression` and `obd:{log}:all:row{n:06d}:click`.
  Importing again adds nothing: ids already in the log are skipped, and the log drops duplicates anyway.
- user_id: the data has no user id, only four hashed user features. `user_id` is a pseudonymous *cohort*
  id: `"obd-u-" + sha256("|".join([user_feature_0, user_feature_1, user_feature_2, user_feature_3]))`
  cut to its first 16 hex digits. Many real users share one cohort (the `random` log has 240 distinct
  cohorts, `bts` 253), and the same features give the same id in both logs.
- request_id (one slate decision): ZOZOTOWN shows 3 items per decision, but the sample keeps 10,000
  rows drawn from a much larger log, so most decisions keep only one of their rows. Rows sharing an exact
  timestamp and the user features are not slates: that holds for only 9 pairs (`random`) and 1 (`bts`).
  What does hold: the rows of one slate are logged a few milliseconds apart. Of the consecutive row pairs
  at most 100 ms apart, 113 of 129 (`random`) and 20 of 46 (`bts`) share all four user features, and all
  of those are at different positions with different items; beyond 100 ms only about 3% of pairs share
  them, which is chance. So, rows taken in file (= timestamp) order, a row joins the current request if it
  has the same four user features as the request's first row, is at most 100 ms after it, and fills a
  position the request has not filled yet; otherwise it starts a new request. The request's id names its
  first row: `obd:{log}:all:req{n:06d}`. That gives 9,887 requests in `random` (113 of two rows) and 9,980
  in `bts` (20 of two rows); none has three.
- consent: the data carries none. The Open Bandit Dataset was released publicly, anonymized, by ZOZO for
  research use; kfloop uses it as research data, so imported events are marked
  `consent.personalization = True` and `consent.analytics = True`, with `source = "obd-import"` on every
  row, so they can always be told apart from (and removed separately from) real users' events.
- ts: the row's timestamp, in UTC (RFC 3339). A click gets its impression's timestamp (the data has no
  click time).
- The rest: `item_id` is the item index 0-79 as a string; `position` is the CSV's 1-3; `policy` is
  `random` or `bts`; `propensity` is the CSV's `propensity_score` (the probability that the logging
  policy put that item at that position: 1/80 for `random`); `model_version` is `obd-random` or `obd-bts`.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kfloop.data.obd import CAMPAIGN, LOGS, Progress, obd_log_csv, print_progress, verify_obd
from kfloop.errors import DataIntegrityError
from kfloop.eventlog import ACCEPTED, DUPLICATE, EventLog, read_events
from kfloop.events import parse_event
from kfloop.events.record import to_record

SOURCE = "obd-import"
USER_FEATURES = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")
SLATE_WINDOW = timedelta(milliseconds=100)
BATCH_SIZE = 1000
_CONSENT = {"personalization": True, "analytics": True}


@dataclass(frozen=True)
class ObdRow:
    """The columns of one `all.csv` row that become events."""

    number: int
    ts: datetime
    item_id: str
    position: int
    click: int
    propensity: float
    user_features: tuple[str, ...]


@dataclass(frozen=True)
class LogImport:
    """What importing one log did."""

    log: str
    rows_read: int
    requests: int
    impressions: int
    clicks: int
    csv_clicks: int
    appended: int
    already_present: int


@dataclass(frozen=True)
class ImportSummary:
    """What `import_obd` did, per log."""

    logs: tuple[LogImport, ...]

    @property
    def appended(self) -> int:
        return sum(entry.appended for entry in self.logs)

    @property
    def already_present(self) -> int:
        return sum(entry.already_present for entry in self.logs)

    @property
    def impressions(self) -> int:
        return sum(entry.impressions for entry in self.logs)

    @property
    def clicks(self) -> int:
        return sum(entry.clicks for entry in self.logs)

    def to_dict(self) -> dict[str, Any]:
        return {"logs": [asdict(entry) for entry in self.logs]}


def read_rows(path: Path) -> list[ObdRow]:
    """The rows of one OBD `all.csv`, in file order (which is timestamp order)."""
    with open(path, newline="") as handle:
        return [_row(number, raw, path) for number, raw in enumerate(csv.DictReader(handle))]


def _row(number: int, raw: dict[str, str], path: Path) -> ObdRow:
    click = int(raw["click"])
    if click not in (0, 1):
        raise DataIntegrityError(f"{path}: data row {number} has click={click}, expected 0 or 1")
    return ObdRow(
        number=number,
        ts=datetime.fromisoformat(raw["timestamp"]).astimezone(UTC),
        item_id=str(int(raw["item_id"])),
        position=int(raw["position"]),
        click=click,
        propensity=float(raw["propensity_score"]),
        user_features=tuple(raw[name] for name in USER_FEATURES),
    )


def user_id_of(user_features: tuple[str, ...]) -> str:
    """Pseudonymous cohort id of the four hashed user features."""
    return "obd-u-" + hashlib.sha256("|".join(user_features).encode()).hexdigest()[:16]


def request_ids(log: str, rows: list[ObdRow]) -> list[str]:
    """One request id per row: rows of one slate (see the module docstring) share it."""
    ids: list[str] = []
    first: ObdRow | None = None
    filled: set[int] = set()
    for row in rows:
        if first is None or not _same_slate(first, row, filled):
            first, filled = row, set()
        filled.add(row.position)
        ids.append(f"obd:{log}:{CAMPAIGN}:req{first.number:06d}")
    return ids


def _same_slate(first: ObdRow, row: ObdRow, filled: set[int]) -> bool:
    return (
        row.user_features == first.user_features
        and timedelta(0) <= row.ts - first.ts <= SLATE_WINDOW
        and row.position not in filled
    )


def event_id(log: str, row_number: int, kind: str) -> str:
    return f"obd:{log}:{CAMPAIGN}:row{row_number:06d}:{kind}"


def row_events(log: str, row: ObdRow, request_id: str) -> list[dict[str, Any]]:
    """The impression of one row, and its click if the item was clicked, as event dicts (schema v1)."""
    common = {
        "request_id": request_id,
        "user_id": user_id_of(row.user_features),
        "ts": row.ts.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "consent": _CONSENT,
        "model_version": f"obd-{log}",
        "item_id": row.item_id,
        "position": row.position,
    }
    events = [
        {
            **common,
            "type": "impression",
            "event_id": event_id(log, row.number, "impression"),
            "policy": log,
            "propensity": row.propensity,
        }
    ]
    if row.click:
        events.append({**common, "type": "click", "event_id": event_id(log, row.number, "click")})
    return events


def import_obd(
    data_dir: Path,
    log: EventLog,
    *,
    logs: tuple[str, ...] = LOGS,
    batch_size: int = BATCH_SIZE,
    progress: Progress = print_progress,
) -> ImportSummary:
    """Append the OBD sample's events to an open event log; events already there are skipped.

    The CSVs are checked against their pinned hashes first (run `fetch_obd` before).
    """
    verify_obd(data_dir, logs)
    present = set(read_events(log.config.log_uri, columns=["event_id"]).column("event_id").to_pylist())
    received_at = datetime.now(UTC)
    return ImportSummary(
        tuple(_import_log(data_dir, name, log, present, received_at, batch_size, progress) for name in logs)
    )


def _import_log(
    data_dir: Path,
    name: str,
    log: EventLog,
    present: set[str],
    received_at: datetime,
    batch_size: int,
    progress: Progress,
) -> LogImport:
    rows = read_rows(obd_log_csv(data_dir, name))
    requests = request_ids(name, rows)
    events = [event for row, request in zip(rows, requests, strict=True) for event in row_events(name, row, request)]
    progress(f"obd import: {name}: {len(rows):,} rows, {len(set(requests)):,} requests, {len(events):,} events")
    appended = already = 0
    for batch in _batches(events, batch_size):
        new = [e for e in batch if e["event_id"] not in present]
        already += len(batch) - len(new)
        records = [to_record(parse_event(e), received_at=received_at, source=SOURCE) for e in new]
        statuses = log.append(records) if records else []
        appended += statuses.count(ACCEPTED)
        already += statuses.count(DUPLICATE)
    progress(f"obd import: {name}: {appended:,} appended, {already:,} already present")
    clicks = sum(1 for e in events if e["type"] == "click")
    return LogImport(
        log=name,
        rows_read=len(rows),
        requests=len(set(requests)),
        impressions=len(events) - clicks,
        clicks=clicks,
        csv_clicks=sum(row.click for row in rows),
        appended=appended,
        already_present=already,
    )


def _batches(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
