"""What the joiner exports for the alerts: each version's reference CTR (the clicks on its first impressions as
stable, fixed once its clicks had time to arrive) and the newest feedback's arrival, in the pure join, on
/metrics, and after a restart that rebuilds them from the log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kfloop.config import load_config
from kfloop.errors import ConfigError
from kfloop.eventlog import EventLog
from serving.joiner.app import create_app
from serving.joiner.config import JoinerConfig
from serving.joiner.follow import LogJoiner
from serving.joiner.join import Joiner
from serving.joiner.reference import ReferenceWindows
from tests.support.joiner import feedback, metric, slate
from tests.unit.test_joiner import T0, Clock, S, at, joiner_config, row

SETTLE = 30


def shown(request_id: str, arrived_s: float, version: str = "v1", variant: str = "stable", items: str = "ab") -> list:
    """A slate's impressions, decided and arrived at `arrived_s`."""
    return [
        row(
            f"imp-{request_id}-{n}",
            "impression",
            request_id,
            arrived_s,
            arrived_s,
            item_id=item,
            model_version=version,
            variant=variant,
        )
        for n, item in enumerate(items, start=1)
    ]


def click(event_id: str, request_id: str, item: str, arrived_s: float, ts_s: float | None = None) -> dict:
    return row(event_id, "click", request_id, arrived_s if ts_s is None else ts_s, arrived_s, item_id=item)


def joiner(size: int = 6) -> Joiner:
    return Joiner(window_us=60 * S, remember_us=600 * S, reference_size=size, reference_settle_us=SETTLE * S)


def ingest(target: Joiner, *groups: list[dict] | dict) -> None:
    for group in groups:
        for record in group if isinstance(group, list) else [group]:
            target.ingest(record)


def test_the_reference_is_the_clicks_on_the_first_impressions_as_stable_fixed_after_the_settle_time():
    j = joiner(size=6)
    ingest(
        j,
        shown("c1", 100, variant="canary"),  # as a canary, before its promotion: not in the reference
        click("c-canary", "c1", "a", 101),
        shown("s1", 110),
        click("k1", "s1", "a", 111),
        click("k1", "s1", "a", 111),  # a copy: counted once
        shown("s2", 120),
        row("d2", "dwell", "s2", 121, 121, item_id="a", dwell_ms=900),  # not a click
        click("k-early", "s3", "b", 125),  # before its impressions: waits, then joins
        shown("s3", 130),  # the window is full with this slate's second impression
        shown("s4", 131),  # beyond the window
        click("k4", "s4", "a", 132),
        shown("u1", 133, version=None),  # no version named: never a reference
    )
    assert j.references.ctr == {}  # full, but its clicks are still awaited
    j.advance((130 + SETTLE) * S - 1)
    assert j.references.ctr == {}
    ingest(
        j,
        click("k3", "s3", "a", 150),
        click("k-zz", "s2", "zz", 151),  # an item the request did not show: its first impression's
        click("k-late", "s1", "b", 152, ts_s=180),  # 70 s after its decision: late, not attributed
    )
    j.advance((130 + SETTLE) * S)
    assert j.references.ctr == {"v1": pytest.approx(4 / 6)}  # k1, k-early, k3, k-zz
    ingest(j, click("k-after", "s2", "b", 170))
    assert j.references.ctr == {"v1": pytest.approx(4 / 6)}  # fixed
    assert j.counts.attributed[("v1", "stable", "click")] == 6  # every click is counted as always


def test_each_version_has_its_own_window_and_the_newest_feedback_arrival_is_kept():
    j = joiner(size=2)
    assert j.last_feedback_us is None
    ingest(j, shown("a1", 100, version="v1"), shown("b1", 101, version="v2"), click("x", "b1", "b", 102))
    assert j.last_feedback_us == 102 * S
    ingest(j, shown("b2", 140, version="v2"))  # impressions do not move it
    ingest(j, row("dup", "rating", "b1", 150, 150, rating=3), row("dup", "rating", "b1", 150, 155, rating=3))
    assert j.last_feedback_us == 155 * S  # a copy arrives all the same
    j.advance(200 * S)
    assert j.references.ctr == {"v1": 0.0, "v2": 0.5}


def test_a_reference_window_needs_a_size():
    with pytest.raises(ValueError, match="size"):
        ReferenceWindows(size=0, settle_us=0)


def test_metrics_show_the_reference_and_the_newest_feedback_live_and_after_a_restart(tmp_path: Path):
    config = joiner_config(tmp_path).model_copy(update={"reference_impressions": 4, "reference_settle_s": SETTLE})
    clock = Clock()
    clock.offset_us = 5 * 60 * S  # the joiner's clock is past every window here
    records = [
        *slate("r1", ["a", "b"], T0, model_version="v7", variant="stable"),
        *slate("r2", ["c", "d"], at(1), model_version="v7", variant="stable"),
        *slate("r3", ["e", "f"], at(2), model_version="v7", variant="stable"),
        feedback("c-1", "click", "b", at(3), request_id="r1"),
        feedback("c-3", "click", "e", at(4), request_id="r3"),  # outside the window of 4
    ]
    newest = max(r["received_at"] for r in records if r["type"] == "click").timestamp()
    with TestClient(create_app(config, LogJoiner(config, clock=clock))) as client:
        text = scrape_when_ready(client)
        started = metric(text, "kfloop_joiner_last_feedback_timestamp_seconds")
        assert abs(started - (time.time() + 300)) < 60  # no feedback yet: silent since the joiner started
        assert "kfloop_joiner_reference_ctr{" not in text
        with EventLog(config.event_log, writer_id="collector-0") as log:
            log.append(records)
            deadline = time.monotonic() + 30
            while "kfloop_joiner_reference_ctr{" not in (text := client.get("/metrics").text):
                assert time.monotonic() < deadline, "the live joiner never fixed the reference"
                time.sleep(0.05)
    assert metric(text, "kfloop_joiner_reference_ctr", model_version="v7") == 0.25
    assert metric(text, "kfloop_joiner_last_feedback_timestamp_seconds") == pytest.approx(newest, abs=1e-6)
    with TestClient(create_app(config, LogJoiner(config, clock=clock))) as client:
        text = scrape_when_ready(client)  # rebuilt from the log
    assert metric(text, "kfloop_joiner_reference_ctr", model_version="v7") == 0.25
    assert metric(text, "kfloop_joiner_last_feedback_timestamp_seconds") == pytest.approx(newest, abs=1e-6)


def scrape_when_ready(client: TestClient) -> str:
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the joiner never became ready"
        time.sleep(0.02)
    return client.get("/metrics").text


def test_the_settle_time_must_fit_in_the_attribution_window(tmp_path: Path):
    path = tmp_path / "joiner.yaml"
    path.write_text("window_s: 60\nreference_settle_s: 61\n")
    with pytest.raises(ConfigError, match=r"reference_settle_s: .*at most window_s"):
        load_config(JoinerConfig, path)
    path.write_text("reference_impressions: 0\n")
    with pytest.raises(ConfigError, match="reference_impressions"):
        load_config(JoinerConfig, path)
