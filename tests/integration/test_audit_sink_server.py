"""The audit sink as a real server (uvicorn subprocess) with predictor-side spools shipping to it:
a shipper killed with SIGKILL loses nothing and duplicates nothing once restarted."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from kfloop.audit import AuditRecorder, HttpSink, Shipper, Spool, SpoolConfig, verify_store
from kfloop.audit.shipper import REJECTED_FILE
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.framing import frame
from kfloop.processes import free_port, stop_process
from tests.integration.pg_server import postgres_server
from tests.unit.test_audit_support import decision_json, decisions

pytestmark = pytest.mark.serving

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPER = """
import sys, time
from pathlib import Path
from kfloop.audit import AuditRecorder, SpoolConfig
from tests.unit.test_audit_support import decisions

directory, url, start, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = SpoolConfig(dir=directory, sink_url=url, batch_max_records=25, idle_wait_s=0.05, retry_initial_s=0.05)
recorder = AuditRecorder(config)
recorder.open()
recorder.record(*decisions(n, start=start))  # one fsync: the shipper starts on a full spool
print("appended", flush=True)
while recorder.spool.pending_bytes() > 0:
    time.sleep(0.01)
print("drained", flush=True)
time.sleep(3600)  # the test kills this process
"""


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def wait_until(predicate, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def is_ready(url: str) -> bool:
    try:
        return get_json(url + "/readyz")["status"] == "ready"
    except OSError:
        return False


@contextmanager
def sink_server(tmp_path: Path, store_url: str, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    config, log_path = tmp_path / f"sink-{port}.yaml", tmp_path / f"sink-{port}.log"
    config.write_text(yaml.safe_dump({"host": "127.0.0.1", "port": port, "store": {"url": store_url}}))
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.audit", "--config", str(config)], cwd=REPO_ROOT, stdout=log, stderr=log
        )
        try:
            wait_until(lambda: process.poll() is not None or is_ready(url), "the sink to be ready")
            assert process.poll() is None, log_path.read_text()
            yield url
        finally:
            stop_process(process, 30)


@contextmanager
def shipper_process(directory: Path, url: str, start: int, n: int) -> Iterator[subprocess.Popen]:
    """A predictor-like process: appends n decisions to its spool, prints "appended", ships, prints
    "drained". Killed on leaving the block whatever happened."""
    process = subprocess.Popen(
        [sys.executable, "-c", SHIPPER, str(directory), url, str(start), str(n)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def wait_for_line(process: subprocess.Popen, expected: str, timeout_s: float = 120) -> None:
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, f"the shipper did not say {expected!r} within {timeout_s} s"
    line = process.stdout.readline().strip()
    assert line == expected, f"shipper said {line!r}, exit code {process.poll()}"


def all_records(url: str) -> list[dict]:
    records, after = [], 0
    while after is not None:
        page = get_json(f"{url}/v1/decisions?after_seq={after}")
        records += page["records"]
        after = page["next_after_seq"]
    return records


def test_records_spooled_before_a_sigkill_are_shipped_after_restart_once(tmp_path):
    db, spool_dir, n = tmp_path / "audit.db", tmp_path / "spool", 3000
    with sink_server(tmp_path, f"sqlite:///{db}") as url:
        with shipper_process(spool_dir, url, 0, n) as first:
            wait_for_line(first, "appended")  # fsynced in the spool: the predictor would have answered
            wait_until(lambda: get_json(url + "/v1/chain/head")["seq"] >= 50, "the first batches to arrive")
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        shipped_before_kill = get_json(url + "/v1/chain/head")["seq"]
        print(f"killed the shipper after {shipped_before_kill} of {n} records were acknowledged")
        with shipper_process(spool_dir, url, 0, 0) as second:  # appends nothing: ships what the first left
            wait_for_line(second, "appended")
            wait_for_line(second, "drained")
        records = all_records(url)
    assert len(records) == n
    assert sorted(r["request_id"] for r in records) == [f"req-{i:06d}" for i in range(n)]
    with SqliteStore(db) as store:
        assert verify_store(store).ok


def test_the_shipper_retries_until_the_sink_comes_up(tmp_path):
    port = free_port()
    config = SpoolConfig(
        dir=tmp_path / "spool",
        sink_url=f"http://127.0.0.1:{port}",
        idle_wait_s=0.05,
        retry_initial_s=0.05,
        retry_max_s=0.5,
    )
    with AuditRecorder(config) as recorder:
        for record in decisions(100):
            recorder.record(record)
        wait_until(lambda: recorder.shipper.stats.failed_attempts >= 2, "a failed delivery")
        with sink_server(tmp_path, f"sqlite:///{tmp_path / 'audit.db'}", port=port) as url:
            wait_until(lambda: recorder.spool.pending_bytes() == 0, "the spool to drain")
            assert get_json(url + "/v1/chain/head")["seq"] == 100


def test_kserve_logger_style_cloudevents_over_http(tmp_path):
    with sink_server(tmp_path, f"sqlite:///{tmp_path / 'audit.db'}") as url:
        for ce_type, body in (
            ("org.kubeflow.serving.inference.request", b'{"instances": [{"user_id": "u-1"}]}'),
            ("org.kubeflow.serving.inference.response", b'{"predictions": [{"items": ["a", "b"]}]}'),
        ):
            request = urllib.request.Request(
                url + "/v1/cloudevents",
                data=body,
                method="POST",
                headers={
                    "Ce-Specversion": "1.0",
                    "Ce-Id": "req-000001",
                    "Ce-Type": ce_type,
                    "Ce-Source": "http://localhost:9081/",
                    "Ce-Time": "2026-11-23T10:00:00Z",
                    "Ce-Inferenceservicename": "ranker",
                    "Ce-Component": "predictor",
                    "Ce-Endpoint": "default",
                    "Content-Type": "application/json",
                },
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        body = json.dumps({"records": [decision_json(1)]}).encode()
        post = urllib.request.Request(url + "/v1/decisions", data=body, headers={"Content-Type": "application/json"})
        urllib.request.urlopen(post, timeout=10).close()
        kinds = [r["kind"] for r in get_json(url + "/v1/decisions/req-000001")["records"]]
    assert kinds == ["kserve_request", "kserve_response", "decision"]


def test_the_sink_on_postgres(tmp_path):
    pytest.importorskip("pg8000.native", reason="the pg8000 driver is not installed in this environment")
    with postgres_server() as pg, sink_server(tmp_path, pg.url()) as url:
        body = json.dumps({"records": [decision_json(i) for i in range(200)]}).encode()
        post = urllib.request.Request(url + "/v1/decisions", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(post, timeout=30) as response:
            assert json.load(response)["accepted"] == 200
        assert len(all_records(url)) == 200


def test_a_spooled_line_that_is_not_json_is_set_aside_and_the_rest_reach_the_sink(tmp_path):
    # the shipper forwards each record's spooled JSON without decoding it; a line whose checksum holds but
    # whose payload is not JSON (only a writer's bug makes one) must not stall the spool behind it
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append(decisions(2))
    (segment,) = directory.glob("*.spool")
    with open(segment, "ab") as stream:
        stream.write(frame(b'{"request_id": "req-torn", "kind": "decis'))
    with Spool(directory) as spool:
        spool.append(decisions(2, start=2))
    with sink_server(tmp_path, f"sqlite:///{tmp_path / 'audit.db'}") as url:
        with Spool(directory) as spool:
            shipper = Shipper(spool, HttpSink(url))
            assert shipper.drain(timeout_s=30)
        stored = sorted(r["request_id"] for r in all_records(url))
    assert stored == [f"req-{i:06d}" for i in range(4)]
    (rejected,) = [json.loads(line) for line in (directory / REJECTED_FILE).read_text().splitlines()]
    assert rejected["detail"] == [{"field": "(record)", "reason": "not a JSON object"}]
    assert rejected["record"].startswith('{"request_id": "req-torn"')
