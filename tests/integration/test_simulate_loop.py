"""`kfloop simulate` against real local servers: the collector (`kfloop collector`) and the serving stack on the
testbed (the OBD sample's 80 items, the contract model; one predictor, no explainer, to start quickly).

The simulator's ground truth must be the rankings the stack answered (checked against the audit trail), the
clicks it drew must be in the collector's event log naming their decisions, and the same seed must give the
same users, times and (for the same slates) clicks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from kfloop.eventlog import read_events
from kfloop.processes import stop_process
from kfloop.simulate import ClickWorld, SimulateConfig, Simulation, read_rankings, slate_truth
from serving.common.process import ServiceProcess
from tests.support import testbed

pytestmark = [pytest.mark.serving, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
MODEL = "kfloop-ranker"
START_TIMEOUT_S = 300
LOGIT_SHIFT = 3.0  # ~7% of slots clicked: enough clicks in a few seconds to check them one by one
RATE, SECONDS = 25, 5


@dataclass
class Loop:
    root: Path
    bed: testbed.Testbed
    transformer: str
    audit_sink: str
    collector: ServiceProcess


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"gave up waiting for {what} after {timeout_s}s")


def _start_stack(root: Path, bed: testbed.Testbed, impressions: dict | None = None) -> tuple[subprocess.Popen, dict]:
    """The stack on the testbed; `impressions`: the predictor's served impressions go there (a collector)."""
    config = testbed.stack_config(bed, manifest=REPO / "manifests" / "serving" / "inferenceservice.yaml")
    if impressions is not None:
        config["predictor"]["impressions"] = impressions
    config["stack"].update(
        run_explainer=False, predictor_replicas=1, start_timeout_s=START_TIMEOUT_S, poll_interval_s=0.25
    )
    path = root / "serving.yaml"
    path.write_text(yaml.safe_dump(config))
    with open(root / "stack.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.local.stack", "--config", str(path)], stdout=log, stderr=log
        )
    endpoints_file = root / "state" / "endpoints.json"
    try:
        _wait(endpoints_file.exists, START_TIMEOUT_S, "the stack's endpoints")
        endpoints = json.loads(endpoints_file.read_text())
        _wait(lambda: httpx.get(f"{endpoints['router']}/readyz").status_code == 200, START_TIMEOUT_S, "a predictor")
        ready = f"{endpoints['transformer']}/v2/models/{MODEL}/ready"
        _wait(lambda: httpx.get(ready).status_code == 200, START_TIMEOUT_S, "the transformer")
    except TimeoutError:
        stop_process(process, 30)
        raise AssertionError((root / "stack.log").read_text()[-5000:]) from None
    return process, json.loads(endpoints_file.read_text())


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("simulate-loop")
    bed = testbed.build(root, versions=1, use_obd_sample=True)
    assert bed.items == [str(i) for i in range(80)], "needs the OBD sample in data/ (make data)"
    collector_config = root / "collector.yaml"
    collector_config.write_text(
        yaml.safe_dump(
            {
                "writer_id": "simulate-test",
                # sealed into Parquet (where readers see them) within a second
                "event_log": {
                    "wal_dir": str(root / "events-wal"),
                    "log_uri": str(root / "events"),
                    "segment_max_age_s": 0.5,
                },
            }
        )
    )
    collector = ServiceProcess("kfloop", ["collector", "--config", str(collector_config)], log_path=root / "c.log")
    collector.start(timeout_s=120)
    try:
        stack, endpoints = _start_stack(root, bed)
    except BaseException:
        collector.stop()
        raise
    yield Loop(root, bed, endpoints["transformer"], endpoints["audit_sink"], collector)
    stop_process(stack, 90)
    collector.stop()


def _simulate_command(loop: Loop, run_id: str) -> tuple[dict, str]:
    command = [
        *(sys.executable, "-m", "kfloop", "simulate", "--transformer-url", loop.transformer),
        *("--collector-url", loop.collector.url, "--rate", str(RATE), "--duration", str(SECONDS)),
        *("--seed", "11", "--run-id", run_id, "--out-dir", str(loop.root / "runs"), "--dwell"),
        *("--logit-shift", str(LOGIT_SHIFT), "--users", "300"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), result.stderr


def _audited(loop: Loop, request_id: str) -> dict:
    response = httpx.get(f"{loop.audit_sink}/v1/decisions/{request_id}")
    records = response.json()["records"] if response.status_code == 200 else []
    decisions = [row["record"] for row in records if row["record"]["kind"] == "decision"]
    return decisions[0] if decisions else {}


@pytest.fixture(scope="module")
def world() -> ClickWorld:
    return ClickWorld.from_obd(REPO / "data", logit_shift=LOGIT_SHIFT)


@pytest.fixture(scope="module")
def first_run(loop: Loop) -> tuple[dict, str, list[dict]]:
    summary, stderr = _simulate_command(loop, "it-a")
    return summary, stderr, read_rankings(loop.root / "runs" / "it-a")


def test_every_answered_ranking_is_in_the_ground_truth_as_the_stack_served_it(loop, first_run):
    summary, stderr, rows = first_run
    assert summary["planned"] == summary["sent"] == summary["answered"] == RATE * SECONDS
    assert summary["errors"] == {} and summary["skipped"] == 0
    assert "base rate: logit_shift +3" in stderr and "CTR per slot" in stderr
    assert len(rows) == RATE * SECONDS
    assert sorted(r["index"] for r in rows) == list(range(RATE * SECONDS))
    assert len({r["request_id"] for r in rows}) == len(rows)
    version = loop.bed.versions[0]
    audited: dict[str, dict] = {}

    def all_audited() -> bool:
        for row in rows:
            if row["request_id"] not in audited and (decision := _audited(loop, row["request_id"])):
                audited[row["request_id"]] = decision
        return len(audited) == len(rows)

    _wait(all_audited, 120, "every decision in the audit sink")
    for row in rows:
        assert row["request_id"].startswith("sim-it-a-")
        assert (row["model_version"], row["variant"]) == (version, "stable")
        decision = audited[row["request_id"]]
        assert decision["user_id"] == row["user_id"] and decision["model_version"] == version
        served = [(c["item_id"], c["position"], c["propensity"]) for c in decision["candidates"]]
        assert served == list(zip(row["items"], row["positions"], row["propensities"], strict=True))


def test_the_ground_truth_is_the_click_models_and_the_progress_shows_it(first_run, world):
    summary, _, rows = first_run
    for row in rows:
        cohort = world.cohort_ids.index(row["cohort_id"])
        assert row["user_id"] == row["cohort_id"] or row["user_id"].startswith(row["cohort_id"] + "-")
        truth = slate_truth(world, world.click_probability[cohort], row["items"], row["positions"])
        assert row["expected_clicks"] == truth.expected and row["unmodelled"] == 0
    stable = summary["variants"]["stable"]
    clicks = sum(sum(r["clicks"]) for r in rows)
    expected = sum(sum(r["expected_clicks"]) for r in rows)
    assert stable["clicks"] == clicks and stable["expected"] == pytest.approx(expected, abs=1e-3)
    assert stable["slots"] == 3 * len(rows) and clicks > 0
    assert abs(clicks - expected) < 5 * np.sqrt(expected) + 3  # realized clicks follow the expected ones


def test_the_collector_stored_each_click_naming_its_decision(loop, first_run):
    summary, _, rows = first_run
    drawn = {
        (r["request_id"], item, position, r["model_version"], r["variant"], r["user_id"])
        for r in rows
        for item, position, click in zip(r["items"], r["positions"], r["clicks"], strict=True)
        if click
    }
    assert summary["feedback_events_stored"] == 2 * len(drawn)  # a click and a dwell each
    columns = ["type", "request_id", "item_id", "position", "model_version", "variant", "user_id"]
    events: list[dict] = []

    def sealed() -> bool:
        events[:] = read_events(str(loop.root / "events"), columns=columns).to_pylist()
        return len(events) >= summary["feedback_events_stored"]

    _wait(sealed, 60, "the feedback in the sealed event log")
    clicks = {
        (e["request_id"], e["item_id"], e["position"], e["model_version"], e["variant"], e["user_id"])
        for e in events
        if e["type"] == "click"
    }
    assert clicks == drawn
    dwells = {(e["request_id"], e["item_id"]) for e in events if e["type"] == "dwell"}
    assert dwells == {(d[0], d[1]) for d in drawn}


def test_users_the_feature_store_does_not_know_are_served_as_cold_starts(loop, first_run):
    """The testbed's store holds the OBD sample's cohorts (its user context), so a simulated user named as its
    cohort is known; every other simulated user (the cohort's id and a number) is new to the store and was
    served from the cold-start defaults."""
    rows = first_run[2]
    new_users = [row for row in rows if row["user_id"] != row["cohort_id"]]
    assert new_users, "the run drew no user beyond the cohorts' own ids"
    metrics = httpx.get(f"{loop.transformer}/metrics").text
    (line,) = [m for m in metrics.splitlines() if m.startswith('kfloop_transformer_cold_start_total{kind="user"}')]
    assert len(new_users) <= float(line.rsplit(" ", 1)[1]) <= len(rows)


def test_the_consent_field_is_sent_or_dropped_once_with_a_warning(first_run):
    _, stderr, rows = first_run
    refused = "refused the `consent` field" in stderr
    # today's front door may not know the field yet: then every ranking still got answered, without it
    assert stderr.count("refused the `consent` field") == (1 if refused else 0)
    assert len(rows) == RATE * SECONDS


def test_the_same_seed_gives_the_same_users_times_and_clicks(loop, first_run, world, tmp_path):
    _, _, rows = first_run
    config = SimulateConfig(
        transformer_url=loop.transformer,
        collector_url=loop.collector.url,
        rate=RATE,
        requests=RATE * 2,
        seed=11,
        users=300,
        dwell=True,
        run_id="it-b",
        out_dir=tmp_path,
        progress=False,
    )
    summary = Simulation(config, world).run()
    assert summary["answered"] == RATE * 2 and summary["errors"] == {}
    again = {r["index"]: r for r in read_rankings(tmp_path / "it-b")}
    same_slates = 0
    for row in sorted(rows, key=lambda r: r["index"])[: RATE * 2]:
        other = again[row["index"]]
        assert (other["user_id"], other["elapsed_s"]) == (row["user_id"], row["elapsed_s"])
        if other["items"] == row["items"]:
            same_slates += 1
            assert other["clicks"] == row["clicks"] and other["expected_clicks"] == row["expected_clicks"]
    assert same_slates > 0
