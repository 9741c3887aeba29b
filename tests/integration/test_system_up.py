"""`kfloop up` runs the whole local system from a clean state directory (only a registered model and a feature store
in it, from the testbed), `kfloop status` reports it, a collector killed with SIGKILL comes back without losing an
acknowledged event, and after `kfloop down` no process it started remains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kfloop.eventlog import read_events
from serving.local.system import pids
from serving.local.system.config import SystemPaths
from tests.conftest import REPO_ROOT
from tests.support import testbed
from tests.support.system import system_data, write_system

pytestmark = [pytest.mark.serving, pytest.mark.integration]

KFLOOP = [sys.executable, "-m", "kfloop"]
MODEL = "kfloop-ranker"


def system_config(path: Path) -> Path:
    """The default system file with every loopback port moved to a free one (tests run beside other stacks), and
    start timeouts for a host that other test suites may be keeping busy (the time taken is printed)."""
    return write_system(path, system_data())


def kfloop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*KFLOOP, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def status(where: list[str]) -> dict:
    result = kfloop("status", "--json", *where)
    return json.loads(result.stdout)


def part(live: dict, name: str) -> dict:
    return next(p for p in live["parts"] if p["name"] == name)


def started_processes(paths: SystemPaths) -> list[pids.PidRecord]:
    """Every process `kfloop up` started that runs now: the supervisor, each part, and the serving stack's own
    children (in the serving part's group)."""
    records = [pids.read_record(paths.supervisor_pid)]
    records += [pids.read_record(path) for path in paths.pids.glob("*.json")]
    serving = pids.read_record(paths.pid("serving"))
    for pid in pids.group_members(serving.pgid):
        records.append(pids.PidRecord.of(pid, ["serving child"]))
    return [r for r in records if r is not None]


def event(event_id: str) -> dict:
    return {
        "event_id": event_id,
        "type": "click",
        "user_id": "u-1",
        "item_id": "3",
        "ts": "2026-11-23T10:00:00Z",
        "consent": {"personalization": True},
    }


def send_events(url: str, prefix: str, batches: int) -> set[str]:
    """Batches of 20 events; the ids the collector acknowledged (200, accepted)."""
    acknowledged: set[str] = set()
    with httpx.Client(base_url=url, timeout=10) as client:
        for n in range(batches):
            ids = [f"{prefix}-{n}-{i}" for i in range(20)]
            response = client.post("/v1/events", json=[event(i) for i in ids])
            assert response.status_code == 200, response.text
            acknowledged |= {r["event_id"] for r in response.json()["results"] if r["status"] == "accepted"}
    return acknowledged


@pytest.fixture
def system(tmp_path: Path):
    """A state directory holding a registered contract model and a feature store, and the command-line arguments
    that point `kfloop up | down | status` at it; `kfloop down` at the end whatever happened."""
    state = tmp_path / "state"
    testbed.build(state, versions=1, use_obd_sample=True)  # {state}/registry and {state}/features
    where = ["--config", str(system_config(tmp_path / "system.yaml")), "--state-dir", str(state)]
    yield where, SystemPaths(state)
    kfloop("down", *where, timeout=300)


@pytest.mark.timeout(2400)  # the testbed, then a whole system coming up beside whatever else the host runs
def test_up_is_healthy_survives_a_killed_collector_and_down_leaves_nothing(system):
    where, paths = system
    began = time.monotonic()
    up = kfloop("up", *where, timeout=900)
    elapsed = time.monotonic() - began
    print(f"\nkfloop up: healthy in {elapsed:.1f} s (on {os.cpu_count()} cores)\n{up.stdout}")
    assert up.returncode == 0, up.stdout + up.stderr
    live = status(where)
    assert live["supervisor"]["running"] and live["supervisor"]["phase"] == "up"
    for entry in live["parts"]:
        assert entry["alive"] == (entry["run"] == "service"), entry
        assert entry["ready"] == (entry["run"] == "service"), entry
    assert live["serving"]["stable"] and live["serving"]["stable_percent"] == 100

    front_door = f"http://127.0.0.1:{part(live, 'serving')['port']}/v1/models/{MODEL}:predict"
    ranked = httpx.post(front_door, json={"instances": [{"user_id": "u-clicker"}]}, timeout=30)
    assert ranked.status_code == 200, ranked.text
    assert ranked.json()["predictions"][0]["model_version"] == live["serving"]["stable"]

    collector = part(live, "collector")
    collector_url = f"http://127.0.0.1:{collector['port']}"
    acknowledged = send_events(collector_url, "before-kill", batches=10)
    assert len(acknowledged) == 200
    os.kill(collector["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 180
    while not (part(live := status(where), "collector")["ready"] and part(live, "collector")["restarts"] == 1):
        assert time.monotonic() < deadline, f"the collector did not come back: {part(live, 'collector')}"
        time.sleep(0.5)
    assert part(live, "collector")["pid"] != collector["pid"]
    # ready after a restart means recovered: what the killed process acknowledged is sealed in the log
    stored = set(read_events(str(paths.state_dir / "events"), columns=["event_id"]).column("event_id").to_pylist())
    assert acknowledged - stored == set()
    assert send_events(collector_url, "after-restart", batches=1)
    assert status(where)["events"]["accepted"] >= 20

    started = started_processes(paths)
    assert len(started) >= 7  # supervisor, collector, follower, serving + transformer, router, predictors, ...
    down = kfloop("down", *where, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [r.pid for r in started if r.running()] == []
    assert [(r.pgid, pids.group_members(r.pgid)) for r in started if r.pgid == r.pid and r.group()] == []
    assert list(paths.pids.glob("*.json")) == []
    assert status(where)["supervisor"]["running"] is False
