"""kill -9 under load loses no acknowledged event, and leaves no Parquet file a reader chokes on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from kfloop.eventlog import read_events
from serving.common.process import ServiceProcess

pytestmark = [pytest.mark.serving, pytest.mark.integration]

CLIENTS = 4
BATCH = 25
LOAD_BEFORE_KILL = 3000  # acknowledged events; the kill comes at least this far into the load
LOAD_SECONDS_MAX = 20.0


def write_config(tmp_path: Path) -> Path:
    config = {
        "writer_id": "collector-crash-test",
        # small, short-lived segments so the kill can land during rotation and sealing too
        "event_log": {
            "wal_dir": str(tmp_path / "wal"),
            "log_uri": str(tmp_path / "log"),
            "segment_max_events": 700,
            "segment_max_age_s": 0.5,
        },
    }
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def event(event_id: str) -> dict:
    return {
        "event_id": event_id,
        "type": "click",
        "user_id": "u-1",
        "item_id": "item-1",
        "ts": "2026-11-23T10:00:00Z",
        "consent": {"personalization": True},
    }


class Producer(threading.Thread):
    """Sends batches, single events and retries of earlier batches until the server goes away."""

    def __init__(self, number: int, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.number, self.url, self.stop = number, url, stop
        self.acknowledged: set[str] = set()

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for round_ in range(1_000_000):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                ids = self._ids_for(round_)
                try:
                    response = client.post("/v1/events", json=[event(i) for i in ids])
                except httpx.HTTPError:
                    return  # the collector was killed; nothing in flight was acknowledged
                if response.status_code == 200:
                    for result in response.json()["results"]:
                        if result["status"] in ("accepted", "duplicate"):
                            self.acknowledged.add(result["event_id"])

    def _ids_for(self, round_: int) -> list[str]:
        if round_ % 7 == 6:  # an idempotent retry of the previous round's batch
            round_ -= 1
        size = 1 if round_ % 3 == 0 else BATCH
        return [f"c{self.number}-r{round_}-{i}" for i in range(size)]


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path):
    config_path = write_config(tmp_path)
    args = ["--config", str(config_path)]
    first = ServiceProcess("serving.collector", args, log_path=tmp_path / "first.log").start()
    stop = threading.Event()
    producers = [Producer(n, first.url, stop) for n in range(CLIENTS)]
    try:
        for producer in producers:
            producer.start()
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        while sum(len(p.acknowledged) for p in producers) < LOAD_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        first.kill()  # SIGKILL mid-load: no shutdown code runs
    finally:
        first.kill()
        stop.set()
        for producer in producers:
            producer.join(timeout=30)
    acknowledged = set().union(*(p.acknowledged for p in producers))
    assert len(acknowledged) >= LOAD_BEFORE_KILL
    assert list((tmp_path / "wal").rglob("*.wal")), "the kill should have left a write-ahead segment to recover"

    second = ServiceProcess("serving.collector", args, log_path=tmp_path / "second.log", port=first.port)
    second.start()  # ready only after recovery sealed what the first process left
    second.stop()
    assert "event log closed and sealed" in second.output()

    stored = set(read_events(str(tmp_path / "log"), columns=["event_id"]).column("event_id").to_pylist())
    assert acknowledged - stored == set()
    files = sorted((tmp_path / "log").rglob("*.parquet"))
    assert files
    for path in files:
        pq.read_table(path)  # every sealed file reads cleanly
    assert list((tmp_path / "wal").rglob("*.wal")) == []
