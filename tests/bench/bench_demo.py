"""`make demo` as a newcomer runs it (`kfloop demo`, the default settings), three times: issue 20's target is the
whole loop within 12 minutes on 2 cores.

Each run has its own state and report directories. Printed per run: the time `kfloop demo` took, each phase's
seconds (from its report), issue 20's efficacy checks with their values, and the host's pace: the busy CPU of the
whole machine during the run (the demo's dozen processes are most of it; beside 2 cores x its seconds, it says
how loaded the host was) and steal. Then the median and spread beside the target. A run that fails (the demo's
exit code) stops the bench with its output.

    .venvs/serving/bin/python tests/bench/bench_demo.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.bench.bench_serving import host_seconds
from tests.support.system import REPO_ROOT

TARGET_S = 12 * 60.0


def one_run(root: Path, n: int) -> float:
    """One `kfloop demo`, printed; its seconds."""
    report = root / f"report-{n}"
    argv = [
        sys.executable,
        "-m",
        "kfloop",
        "demo",
        "--state-dir",
        str(root / f"state-{n}"),
        "--report-dir",
        str(report),
    ]
    before, began = host_seconds(), time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3 * 3600, cwd=REPO_ROOT)
    seconds, after = time.monotonic() - began, host_seconds()
    if done.returncode != 0:
        raise SystemExit(
            f"run {n}: kfloop demo exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    data = json.loads((report / "report.json").read_text())
    print(f"  run {n}: {seconds:.0f} s  | {pace(before, after, seconds)}", flush=True)
    phases = ", ".join(f"{p['name'].split(':')[0]} {p['seconds']:.0f}" for p in data["phases"])
    print(f"         phases (s): {phases}", flush=True)
    checks = "; ".join(f"{c['check']} {c['value']} ({verdict(c['passed'])})" for c in data["efficacy"]["checks"])
    print(f"         efficacy: {checks}", flush=True)
    return seconds


def verdict(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL"}.get(passed, "not measured")


def pace(before: tuple[float, float] | None, after: tuple[float, float] | None, seconds: float) -> str:
    cores = psutil.cpu_count() or 1
    if before is None or after is None:
        return f"{cores} cores"
    busy = (after[0] - before[0]) / seconds
    steal = 100 * (after[1] - before[1]) / (seconds * cores)
    return f"host busy {busy:.2f} of {cores} cores on average; steal {steal:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"kfloop demo, the default settings ({psutil.cpu_count()} cores):")
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        times = [one_run(Path(tmp), n) for n in range(1, args.runs + 1)]
    median = statistics.median(times)
    print(
        f"kfloop demo: median {median:.0f} s, spread {min(times):.0f}-{max(times):.0f} s over {len(times)} runs "
        f"(target <= {TARGET_S:g} s: {'met' if median <= TARGET_S else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
