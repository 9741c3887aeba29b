"""Served slates become impressions in the event log, through real processes: a collector (`kfloop collector`,
with a serving token) and the serving stack (transformer -> router -> predictor -> audit sink), its predictor
logging impressions. A ranking's impressions reach the log with their exact propensities, a client's own copy
of a slot loses to the served one, a ranking without consent logs none, and impressions answered but not yet
shipped when the predictor is killed (SIGKILL) ship after its restart."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kfloop.eventlog import read_events
from serving.common.process import ServiceProcess
from tests.support import testbed
from tests.support.stack import Stack, running_stack, wait_for

pytestmark = [pytest.mark.serving, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300
TOKEN = "integration-serving-token"


class Collector:
    """`kfloop collector` on a fixed port, so that it can be stopped and started again at the same address."""

    def __init__(self, root: Path) -> None:
        token_file = root / "serving-token"
        token_file.write_text(TOKEN)
        self.log_uri = str(root / "events")
        config = {
            "writer_id": "collector-0",
            "event_log": {"wal_dir": str(root / "wal"), "log_uri": self.log_uri, "segment_max_age_s": 0.3},
            "serving_token_file": str(token_file),
        }
        self.config = root / "collector.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.token_file, self.root = token_file, root
        self.process = self._process(port=0)

    def _process(self, port: int) -> ServiceProcess:
        args = ["collector", "--config", str(self.config)]
        return ServiceProcess("kfloop", args, log_path=self.root / "collector.log", port=port)

    def start(self) -> None:
        self.process.start(timeout_s=120)

    def restart(self) -> None:
        self.process = self._process(port=self.process.port)
        self.start()

    def rows(self, request_id: str) -> list[dict[str, Any]]:
        """The stored impressions of a request (every copy), slot 1 first."""
        table = read_events(self.log_uri, deduplicate=False).to_pylist()
        return sorted((r for r in table if r["request_id"] == request_id), key=lambda r: (r["position"], r["source"]))

    def served(self, request_id: str) -> list[dict[str, Any]]:
        """The impressions a reader of the log sees for a request (the preferred copies)."""
        rows = [r for r in read_events(self.log_uri).to_pylist() if r["request_id"] == request_id]
        return sorted(rows, key=lambda r: r["position"])


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[tuple[Stack, Collector]]:
    root = tmp_path_factory.mktemp("served-impressions")
    collector = Collector(root)
    collector.start()
    bed = testbed.build(root, versions=1, n_items=12)
    config = testbed.stack_config(bed, manifest=REPO / "manifests" / "serving" / "inferenceservice.yaml")
    config["predictor"]["impressions"] = {
        "collector_url": collector.process.url,
        "token_file": str(collector.token_file),
    }
    config["stack"].update(
        predictor_replicas=1,
        run_explainer=False,
        start_timeout_s=START_TIMEOUT_S,
        restart_backoff_s=0.5,
        poll_interval_s=0.25,
    )
    try:
        with running_stack(bed, config, start_timeout_s=START_TIMEOUT_S) as stack:
            yield stack, collector
    finally:
        collector.process.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as c:
        yield c


def assert_logged_as_served(rows: list[dict[str, Any]], answer: dict[str, Any]) -> None:
    assert [(r["item_id"], r["position"], r["propensity"]) for r in rows] == [
        (s["item_id"], s["position"], s["propensity"]) for s in answer["slate"]
    ]
    request_id = answer["request_id"]
    assert [r["event_id"] for r in rows] == [f"imp-{request_id}-{n}" for n in (1, 2, 3)]
    assert {(r["source"], r["model_version"], r["variant"], r["policy"]) for r in rows} == {
        ("serving", answer["model_version"], answer["variant"], "epsilon_greedy")
    }


def client_copy(request_id: str, item_id: str) -> dict[str, Any]:
    """A client's own impression of slot 1 of a request, as clients sent them before: the same event id."""
    return {
        "event_id": f"imp-{request_id}-1",
        "type": "impression",
        "user_id": testbed.CLICKER,
        "request_id": request_id,
        "item_id": item_id,
        "position": 1,
        "ts": "2026-12-01T10:00:00Z",
        "consent": {"personalization": True},
    }


def test_a_rankings_impressions_reach_the_log_with_their_propensities_and_a_clients_copy_loses(system, client):
    stack, collector = system
    events = f"{collector.process.url}/v1/events"
    # a client's copy stored before the served one (its item wrong, even): the served one is stored too, and wins
    assert client.post(events, json=client_copy("it-imp-1", "not-what-was-shown")).json()["accepted"] == 1
    without = stack.rank(client, testbed.CLICKER, request_id="it-imp-none", consent={"personalization": False})
    answer = stack.rank(client, testbed.CLICKER, request_id="it-imp-1")
    rows = wait_for(lambda: len(collector.rows("it-imp-1")) == 4 and collector.served("it-imp-1"), 60, "the log")
    assert_logged_as_served(rows, answer)
    assert all(r["user_id"] == testbed.CLICKER for r in rows)
    assert [r["source"] for r in collector.rows("it-imp-1") if r["position"] == 1] == ["api", "serving"]
    # a client's copy that comes after the served one is a duplicate
    assert client.post(events, json=client_copy("it-imp-1", "not-what-was-shown")).json()["duplicate"] == 1
    # shipped in spool order: the ranking before it has had its turn, and logged nothing
    assert collector.rows(without["request_id"]) == []
    decision = wait_for(lambda: sink_decision(stack, without["request_id"]), 60, "the decision in the audit sink")
    assert decision["consent"] == {"personalization": False, "analytics": False}


def sink_decision(stack: Stack, request_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{stack.endpoints['audit_sink']}/v1/decisions/{request_id}")
    records = [row["record"] for row in response.json()["records"]] if response.status_code == 200 else []
    return next((r for r in records if r["kind"] == "decision"), None)


def test_impressions_answered_before_a_sigkill_ship_after_the_restart(system, client):
    stack, collector = system
    collector.process.stop()  # nothing can ship now: the impressions stay in the predictor's spool
    answer = stack.rank(client, testbed.BROWSER, request_id="it-imp-killed")
    (predictor,) = stack.refresh()["predictors"][stack.bed.versions[0]]
    os.kill(predictor["pid"], signal.SIGKILL)
    collector.restart()
    wait_for(
        lambda: stack.refresh()["predictors"][stack.bed.versions[0]][0]["pid"] != predictor["pid"],
        60,
        "the predictor's restart",
    )
    rows = wait_for(lambda: len(collector.rows("it-imp-killed")) == 3 and collector.rows("it-imp-killed"), 180, "log")
    assert_logged_as_served(rows, answer)  # each exactly once
    wait_for(lambda: httpx.get(f"{stack.endpoints['router']}/readyz").status_code == 200, 60, "the route")
    assert stack.rank(client, testbed.BROWSER)["slate"]  # and the restarted predictor serves
