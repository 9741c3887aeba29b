"""From outside the supervisor: `kfloop down` (stop what it started, and nothing else), `kfloop status` (what runs,
read from its files and probed live, with the monitoring loop's alerts and actions), and waiting for a detached
supervisor to come up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.local.system import pids
from serving.local.system.config import SystemPaths
from serving.local.system.monitoring_view import monitoring_status
from serving.local.system.part import probe

SUPERVISOR_STOP_MARGIN_S = 15.0
"""Beyond the parts' own stop timeouts, how long the supervisor may take to exit before it is killed."""
EVENTS_METRIC = "kfloop_collector_events_total"


def read_status(paths: SystemPaths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.status.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def down(paths: SystemPaths, out: Callable[[str], None] = print) -> int:
    """Stop the supervisor (which stops its parts in order), then any part a dead supervisor left: only processes
    named by a pid file whose start time matches, each with its process group. How many processes were stopped."""
    stopped = 0
    supervisor = pids.read_record(paths.supervisor_pid)
    if supervisor is not None and supervisor.running():
        status = read_status(paths) or {}
        budget = float(status.get("stop_budget_s") or 120.0) + SUPERVISOR_STOP_MARGIN_S
        out(f"stopping the supervisor (pid {supervisor.pid}) and its parts")
        os.kill(supervisor.pid, signal.SIGTERM)
        if not _wait(lambda: not supervisor.running(), budget):
            out(f"the supervisor did not stop within {budget:g} s: killing it")
            os.kill(supervisor.pid, signal.SIGKILL)
            _wait(lambda: not supervisor.running(), 5.0)
        stopped += 1
    paths.supervisor_pid.unlink(missing_ok=True)
    for path in sorted(paths.pids.glob("*.json")) if paths.pids.exists() else []:
        record = pids.read_record(path)
        if record is not None and record.group():
            out(f"stopping {path.stem} (pid {record.pid}): its supervisor is gone")
            pids.stop(record, timeout_s=30.0)
            stopped += 1
        path.unlink(missing_ok=True)
    return stopped


def event_counts(metrics_url: str) -> dict[str, float] | None:
    """The collector's events by outcome (accepted, duplicate, dropped_consent, rejected) since it started."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    counts: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == EVENTS_METRIC:
                    status = sample.labels.get("status", "")
                    counts[status] = counts.get(status, 0.0) + sample.value
    except ValueError:  # not Prometheus text: something else answers there
        return None
    return counts


def live_status(paths: SystemPaths) -> dict[str, Any]:
    """The status file, checked against the processes running now (pid files) and the parts' readiness URLs."""
    status = read_status(paths) or {"supervisor": {}, "parts": []}
    record = pids.read_record(paths.supervisor_pid)
    supervisor = {**status["supervisor"], "running": record is not None and record.running()}
    parts = []
    for part in status["parts"]:
        record = pids.read_record(paths.pid(part["name"]))
        alive = record is not None and record.running()
        ready = alive and part["run"] == "service" and all(probe(url) for url in part["ready_urls"])
        parts.append({**part, "pid": record.pid if alive else None, "alive": alive, "ready": ready})
    collector = next((p for p in parts if p["kind"] == "collector" and p["alive"]), None)
    return {
        **status,
        "state_dir": str(paths.state_dir),
        "supervisor": supervisor,
        "parts": parts,
        "serving": _served(status.get("serving_state_dir")),
        "events": event_counts(collector["metrics_url"]) if collector else None,
        "monitoring": monitoring_status(parts),
    }


def _served(state_dir: str | None) -> dict[str, Any] | None:
    if state_dir is None:
        return None
    from serving.local.system.serving_view import served

    return served(Path(state_dir))


def follow_until_up(
    supervisor: subprocess.Popen, paths: SystemPaths, log_offset: int, out: Callable[[str], None] = print
) -> int:
    """While a detached supervisor starts the system, pass its log on; 0 once it is up, 1 if it failed or died."""
    position = log_offset
    while True:
        position = _pass_on(paths.supervisor_log, position, out)
        status = read_status(paths)
        phase = status["supervisor"]["phase"] if status and status["supervisor"].get("pid") == supervisor.pid else None
        if phase == "up":
            _pass_on(paths.supervisor_log, position, out)
            return 0
        if supervisor.poll() is not None:
            time.sleep(0.2)
            _pass_on(paths.supervisor_log, position, out)
            out(f"kfloop up: the supervisor exited with {supervisor.returncode} (log: {paths.supervisor_log})")
            return 1
        time.sleep(0.2)


def _pass_on(path: Path, position: int, out: Callable[[str], None]) -> int:
    """Print the complete lines of `path` after `position`; the new position."""
    try:
        with open(path, "rb") as handle:
            handle.seek(position)
            data = handle.read()
    except FileNotFoundError:
        return position
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.decode(errors="replace").splitlines():
        out(line)
    return position + len(complete)
