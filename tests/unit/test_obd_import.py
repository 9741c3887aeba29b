"""Importing the Open Bandit Dataset sample into the event log."""

from __future__ import annotations

import csv
import re
import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kfloop.data import fetch_obd, import_obd
from kfloop.data.import_obd import ImportSummary
from kfloop.errors import DataIntegrityError
from kfloop.eventlog import EventLog, EventLogConfig, read_events

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
LOGS = ("random", "bts")


@pytest.fixture(scope="session")
def obd_root() -> Path:
    """The project's data dir, fetched once (downloads only the first time ever)."""
    return fetch_obd(DATA_DIR)


def event_log(directory: Path) -> EventLog:
    return EventLog(EventLogConfig(wal_dir=directory / "wal", log_uri=str(directory / "events")), writer_id="obd")


def run_import(directory: Path) -> ImportSummary:
    with event_log(directory) as log:
        return import_obd(DATA_DIR, log, progress=lambda _: None)


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


@pytest.fixture(scope="module")
def imported(obd_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImportSummary]:
    directory = tmp_path_factory.mktemp("obd-import")
    return directory, run_import(directory)


@pytest.fixture(scope="module")
def events(imported: tuple[Path, ImportSummary]) -> list[dict[str, Any]]:
    directory, _ = imported
    return rows(read_events(str(directory / "events")))


def csv_rows(obd_root: Path, log: str) -> list[dict[str, str]]:
    with open(obd_root / log / "all.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_one_impression_per_row_and_one_click_per_clicked_row(
    obd_root: Path, imported: tuple[Path, ImportSummary], events: list[dict[str, Any]]
) -> None:
    _, summary = imported
    for log in LOGS:
        raw = csv_rows(obd_root, log)
        csv_clicks = sum(int(r["click"]) for r in raw)
        mine = [e for e in events if e["model_version"] == f"obd-{log}"]
        assert sum(e["type"] == "impression" for e in mine) == len(raw) == 10_000
        assert sum(e["type"] == "click" for e in mine) == csv_clicks
        entry = next(s for s in summary.logs if s.log == log)
        assert (entry.rows_read, entry.impressions, entry.clicks, entry.csv_clicks) == (
            len(raw),
            len(raw),
            csv_clicks,
            csv_clicks,
        )
        assert entry.appended == len(raw) + csv_clicks
        assert entry.already_present == 0
    all_clicks = sum(int(r["click"]) for log in LOGS for r in csv_rows(obd_root, log))
    assert sum(e["type"] == "impression" for e in events) == 20_000
    assert sum(e["type"] == "click" for e in events) == all_clicks
    assert len(events) == 20_000 + all_clicks


def test_each_click_matches_its_impression(events: list[dict[str, Any]]) -> None:
    impressions = {e["event_id"]: e for e in events if e["type"] == "impression"}
    clicks = [e for e in events if e["type"] == "click"]
    assert clicks
    for click in clicks:
        shown = impressions[click["event_id"].replace(":click", ":impression")]
        for field in ("request_id", "user_id", "item_id", "position", "ts", "model_version"):
            assert click[field] == shown[field], field


def test_importing_twice_adds_nothing(obd_root: Path, tmp_path: Path) -> None:
    first = run_import(tmp_path)
    stored = read_events(str(tmp_path / "events"), deduplicate=False).num_rows
    second = run_import(tmp_path)
    assert first.appended == stored > 20_000
    assert second.appended == 0
    assert second.already_present == first.appended
    assert [s.already_present for s in second.logs] == [s.appended for s in first.logs]
    assert read_events(str(tmp_path / "events"), deduplicate=False).num_rows == stored


def test_impressions_carry_position_and_propensity(events: list[dict[str, Any]]) -> None:
    impressions = [e for e in events if e["type"] == "impression"]
    assert {e["position"] for e in impressions} == {1, 2, 3}
    assert all(0.0 < e["propensity"] <= 1.0 for e in impressions)
    random = [e["propensity"] for e in impressions if e["policy"] == "random"]
    bts = [e["propensity"] for e in impressions if e["policy"] == "bts"]
    assert len(random) == len(bts) == 10_000
    assert set(random) == {1 / 80}
    assert len(set(bts)) > 100, "Thompson sampling's propensities vary"


def test_events_are_marked_as_imported_research_data(events: list[dict[str, Any]]) -> None:
    assert {e["source"] for e in events} == {"obd-import"}
    assert all(e["consent_personalization"] for e in events)
    assert {e["model_version"] for e in events} == {"obd-random", "obd-bts"}
    assert all(re.fullmatch(r"obd-u-[0-9a-f]{16}", e["user_id"]) for e in events)


def test_timestamps_are_the_rows_own(obd_root: Path, events: list[dict[str, Any]]) -> None:
    by_id = {e["event_id"]: e for e in events}
    for log in LOGS:
        for number, raw in enumerate(csv_rows(obd_root, log)):
            expected = datetime.fromisoformat(raw["timestamp"]).astimezone(UTC)
            assert by_id[f"obd:{log}:all:row{number:06d}:impression"]["ts"] == expected


def test_requests_group_only_rows_that_can_be_one_slate(events: list[dict[str, Any]]) -> None:
    slates: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] == "impression":
            slates[e["request_id"]].append(e)
    for slate in slates.values():
        assert len({e["position"] for e in slate}) == len(slate) <= 3
        assert len({e["user_id"] for e in slate}) == 1
        assert max(e["ts"] for e in slate) - min(e["ts"] for e in slate) <= timedelta(milliseconds=100)
    # Two rows of the random log logged at the same microsecond for the same user: one slate.
    same_slate = [
        e
        for e in events
        if e["event_id"] in ("obd:random:all:row001714:impression", "obd:random:all:row001715:impression")
    ]
    assert len({e["request_id"] for e in same_slate}) == 1
    assert sum(len(s) == 2 for s in slates.values()) > 0
    assert len(slates) < 20_000


def test_event_ids_are_deterministic(imported: tuple[Path, ImportSummary], tmp_path: Path) -> None:
    directory, _ = imported
    columns = ["event_id", "request_id", "user_id", "item_id", "position", "ts"]
    again = run_import(tmp_path)
    assert again.appended > 0
    first = read_events(str(directory / "events"), columns=columns).sort_by("event_id")
    second = read_events(str(tmp_path / "events"), columns=columns).sort_by("event_id")
    assert first.equals(second)
    expected = {f"obd:{log}:all:row{n:06d}:impression" for log in LOGS for n in range(10_000)}
    impression_ids = {i for i in first.column("event_id").to_pylist() if i.endswith(":impression")}
    assert impression_ids == expected


def test_a_tampered_csv_stops_the_import_before_anything_is_appended(obd_root: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for log in LOGS:
        (data_dir / "obd" / log).mkdir(parents=True)
        for name in ("all.csv", "item_context.csv"):
            shutil.copyfile(obd_root / log / name, data_dir / "obd" / log / name)
    tampered = data_dir / "obd" / "bts" / "all.csv"
    data = bytearray(tampered.read_bytes())
    data[-2] ^= 0x01
    tampered.write_bytes(bytes(data))
    with event_log(tmp_path) as log, pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        import_obd(data_dir, log, progress=lambda _: None)
    assert read_events(str(tmp_path / "events")).num_rows == 0
