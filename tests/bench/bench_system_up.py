"""`kfloop up` from a clean state directory until the system is healthy, then `kfloop down`: three runs.

Each run copies a fresh state directory holding only what a newcomer has after training once (a registered model
version, the Feast repo of the OBD sample's 80 items: the testbed), moves the default system's ports to free ones
(manifests/local/system.yaml: collector, follower, joiner, the serving stack, controller, Alertmanager,
Prometheus), and times `kfloop up` until it returns: every part ready (each answers its readiness URL; the
serving part's front door and router answer for the model, with every stable predictor replica routed). Printed
per run: the time, the CPU the started processes used and what the rest of the host used meanwhile (the pace: the
same start takes up to 2x longer while other work shares the 2 cores), when each part was ready (the supervisor's
and the serving stack's own lines), when the explainer was ready too (off the ranking path, nothing waits for it:
the stack starts it once the stable predictors serve); after `kfloop down`, how many of the processes it started
remain (none, or the run fails). Then the median and spread beside the target (<= 90 s).

    .venvs/serving/bin/python tests/bench/bench_system_up.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from tests.bench.bench_serving import host_seconds
from tests.support import testbed
from tests.support.system import REPO_ROOT, system_data, write_system

TARGET_S = 90.0
MODEL = "kfloop-ranker"
READY_LINE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d )?(\d\d):(\d\d):(\d\d)\S* (?:INFO serving\.local\.stack\.supervisor: )?"
    r"([A-Za-z0-9.-]+): (?:ready|done) in"
)
"""`NAME: ready in N s` in the supervisor's log and in the serving stack's (serving.log), after their clock time."""


def kfloop(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kfloop", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )


def started_processes(supervisor_pid: int) -> list[psutil.Process]:
    """The supervisor and every process under it (each part, the serving stack's children)."""
    supervisor = psutil.Process(supervisor_pid)
    return [supervisor, *supervisor.children(recursive=True)]


def cpu_of(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def ready_lines(logs: Path, began_epoch: float) -> list[str]:
    """When each part and each process of the serving stack was ready, in seconds after `kfloop up` began (the
    logs' clocks have whole seconds)."""
    start = time.localtime(began_epoch)
    start_s = start.tm_hour * 3600 + start.tm_min * 60 + start.tm_sec + began_epoch % 1
    found = []
    for log in (logs / "supervisor.log", logs / "serving.log"):
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if (match := READY_LINE.match(line)) is not None:
                hour, minute, second, name = match.groups()
                at = (int(hour) * 3600 + int(minute) * 60 + int(second) - start_s) % 86400
                found.append((at, f"{re.sub(r'-v[0-9TZ]+-[0-9a-f]+', '', name)} +{at:.0f}"))
    return [text for _, text in sorted(found)]


def explainer_ready_after(state: Path, began: float, timeout_s: float = 300) -> float | None:
    """Seconds from the start of `kfloop up` until the explainer answers ready (None: no explainer)."""
    endpoints = json.loads((state / "serving" / "endpoints.json").read_text())
    url = endpoints.get("explainer")
    if not url:
        return None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/models/{MODEL}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the explainer was not ready {timeout_s:g} s after the system was up")


def one_run(clean: Path, root: Path, n: int) -> float:
    """One start from a copy of `clean`, printed; the seconds to healthy."""
    state = root / f"run-{n}" / "state"
    shutil.copytree(clean, state)
    where = ["--config", str(write_system(state.parent / "system.yaml", system_data())), "--state-dir", str(state)]
    host_before, began, began_epoch = host_seconds(), time.monotonic(), time.time()
    up = kfloop("up", *where, timeout=900)
    healthy_s = time.monotonic() - began
    try:
        if up.returncode != 0:
            raise SystemExit(f"kfloop up failed:\n{up.stdout[-4000:]}\n{up.stderr[-2000:]}")
        started = started_processes(json.loads((state / "system" / "supervisor.pid").read_text())["pid"])
        ours_s, host_after = cpu_of(started), host_seconds()
        explainer_s = explainer_ready_after(state, began)
    finally:
        down = kfloop("down", *where, timeout=600)
    left = [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    print(f"  run {n}: healthy in {healthy_s:.1f} s  | {pace(host_before, host_after, ours_s, healthy_s)}", flush=True)
    print(f"         ready (s after the start): {', '.join(ready_lines(state / 'logs', began_epoch))}", flush=True)
    if explainer_s is not None:
        print(f"         explainer (nothing waits for it): ready +{explainer_s:.0f}", flush=True)
    print(f"         after kfloop down: {len(left)} of the {len(started)} processes it started remain", flush=True)
    if down.returncode != 0 or left:
        raise SystemExit(f"kfloop down left {left} (exit {down.returncode}):\n{down.stdout}\n{down.stderr}")
    return healthy_s


def pace(before: tuple[float, float] | None, after: tuple[float, float] | None, ours_s: float, seconds: float) -> str:
    """The CPU the system's processes used to start, and what else the host ran meanwhile (and steal)."""
    line = f"CPU: the system's processes {ours_s:.0f} s"
    if before is None or after is None:
        return line
    others = max(0.0, after[0] - before[0] - ours_s)
    steal = 100 * (after[1] - before[1]) / (seconds * (psutil.cpu_count() or 1))
    return f"{line}; the rest of the host {others:.0f} s ({others / seconds:.2f} cores); steal {steal:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-up-") as tmp:
        root = Path(tmp)
        testbed.build(root / "clean", versions=1, use_obd_sample=True)  # {clean}/registry and {clean}/features
        print(f"kfloop up from a clean state directory to healthy, then kfloop down ({psutil.cpu_count()} cores):")
        times = [one_run(root / "clean", root, n) for n in range(1, args.runs + 1)]
    median = statistics.median(times)
    print(
        f"kfloop up: median {median:.1f} s, spread {min(times):.1f}-{max(times):.1f} s over {len(times)} runs "
        f"(target <= {TARGET_S:g} s: {'met' if median <= TARGET_S else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
