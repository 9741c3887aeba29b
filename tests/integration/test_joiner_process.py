"""`kfloop joiner` as a real process: events written with the real writer show up as counts on /metrics, equal
to a recount of the log; after a restart (SIGTERM, start again) the replayed log gives the same counts."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from kfloop.eventlog import EventLog, EventLogConfig
from serving.common.process import ServiceProcess
from serving.joiner.join import Counts
from tests.support.joiner import counts_from_metrics, feedback, metric, recount, slate

pytestmark = pytest.mark.integration

WINDOW = timedelta(seconds=2)  # short, so that a click naming an unknown request is unattributed soon


def write_config(tmp_path: Path) -> tuple[Path, EventLogConfig]:
    log = {"wal_dir": str(tmp_path / "wal"), "log_uri": str(tmp_path / "log")}
    config = {"event_log": log, "window_s": WINDOW.total_seconds(), "remember_s": 600, "poll_interval_s": 0.02}
    config["reference_settle_s"] = WINDOW.total_seconds()  # at most the window
    path = tmp_path / "joiner.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, EventLogConfig(**log)


def events(decided: datetime) -> list[dict]:
    return [
        *slate("r1", ["a", "b"], decided, model_version="v1", variant="stable"),
        *slate("r2", ["c", "d", "e"], decided, model_version="v2", variant="canary"),
        feedback("c1", "click", "b", decided + timedelta(seconds=1), request_id="r1"),
        feedback("d1", "dwell", "b", decided + timedelta(seconds=1), request_id="r1", dwell_ms=1234),
        feedback("c2-late", "click", "c", decided + timedelta(seconds=30), request_id="r2"),
        feedback("c-unknown", "click", "a", decided, request_id="never-served"),
    ]


def joiner(tmp_path: Path, config_path: Path) -> ServiceProcess:
    return ServiceProcess("kfloop", ["joiner", "--config", str(config_path)], log_path=tmp_path / "joiner.log")


def counts_settle(process: ServiceProcess, expected: Counts, timeout_s: float = 30.0) -> str:
    """/metrics once its counts equal `expected` (the process follows the log asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(f"{process.url}/metrics").text
        if counts_from_metrics(text) == expected:
            return text
        assert time.monotonic() < deadline, f"counts never matched the recount:\n{text}\n{process.output()}"
        time.sleep(0.1)


def test_the_joiner_process_counts_what_the_log_holds_and_again_after_a_restart(tmp_path: Path) -> None:
    config_path, log_config = write_config(tmp_path)
    decided = datetime.now(UTC) - timedelta(minutes=1)
    first = joiner(tmp_path, config_path).start(timeout_s=120)
    try:
        with (
            EventLog(log_config, writer_id="collector-0") as log,
            EventLog(log_config, writer_id="collector-1") as other,
        ):
            log.append(events(decided))
            other.append([feedback("c1", "click", "b", decided + timedelta(seconds=1), request_id="r1")])  # a copy
        expected = recount(log_config.log_uri, WINDOW)
        assert expected.unattributed and expected.late and expected.duplicates  # the mix the test claims
        text = counts_settle(first, expected)
        assert metric(text, "kfloop_joiner_clicks_total", model_version="v1", variant="stable") == 1
        assert metric(text, "kfloop_joiner_clicks_total", model_version="v2", variant="canary") == 0
        assert metric(text, "kfloop_joiner_dwell_ms_total", model_version="v1", variant="stable") == 1234
        assert httpx.get(f"{first.url}/healthz").json() == {"status": "ok"}
    finally:
        # SIGTERM: uvicorn shuts down gracefully (the joiner closes), then re-raises the signal it caught.
        assert first.stop() == -signal.SIGTERM
        assert "joiner stopped" in first.output()
    second = joiner(tmp_path, config_path).start(timeout_s=120)
    try:
        text = counts_settle(second, expected, timeout_s=5)
        assert metric(text, "kfloop_joiner_replayed_events") == len(events(decided)) + 1
    finally:
        second.stop()
