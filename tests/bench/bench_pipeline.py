"""Bench: the whole training pipeline under kfp.local on the 20,000-row OBD sample (full profile).

Prints wall time by stage, each split into import (process start until TensorFlow & co. are loaded) and
work, the end-to-end wall time against the 300 s target, and its ratio to the training step alone.
Runs in the pipeline environment (re-executes itself there when started from another one).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kfloop.cli.envs import Stack, has_stack, interpreter_for

REPO = Path(__file__).resolve().parents[2]
STAGES = ("examplegen", "validate", "transform", "train", "evaluate", "push")
TARGET_S = 300.0


def main() -> None:
    if not has_stack(Stack.PIPELINE):
        python = interpreter_for(Stack.PIPELINE)
        os.execv(python, [str(python), __file__])
    from kfloop.config import load_config
    from kfloop.data import fetch_obd, import_obd
    from kfloop.eventlog import EventLog, EventLogConfig
    from pipelines.config import PipelineConfig
    from pipelines.runner import run_local

    data_dir = REPO / "data"
    fetch_obd(data_dir, progress=lambda _: None)
    with tempfile.TemporaryDirectory(prefix="kfloop-bench-") as folder:
        root = Path(folder)
        log = EventLogConfig(wal_dir=root / "wal", log_uri=str(root / "events"))
        with EventLog(log, writer_id="obd") as writer:
            summary = import_obd(data_dir, writer, progress=lambda _: None)
        config = load_config(
            PipelineConfig,
            None,
            overrides={
                "features.event_log.log_uri": log.log_uri,
                "features.event_log.wal_dir": str(log.wal_dir),
                "features.store.repo_dir": str(root / "feast"),
                "features.store.obd_data_dir": str(data_dir),
                "registry.uri": str(root / "registry"),
                "pipeline_root": str(root / "pipeline-root"),
            },
        )
        timings = root / "timings"
        started = time.perf_counter()
        with quiet(root / "tasks.log"):
            pushed = run_local(config, timings_dir=str(timings)).pushed
        wall = time.perf_counter() - started
        stages = {s: json.loads((timings / f"{s}.json").read_text()) for s in STAGES}
        report(summary.impressions, stages, wall, pushed)


@contextmanager
def quiet(log: Path) -> Iterator[None]:
    """kfp.local streams every task's output: keep it in a file, print its tail only if the run fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "wb") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            print(log.read_text()[-5000:], file=sys.stderr)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


def report(rows: int, stages: dict[str, dict], wall: float, pushed: dict) -> None:
    print(
        f"training pipeline, kfp.local SubprocessRunner, full profile, {rows:,} OBD impressions, {os.cpu_count()} cores"
    )
    print(f"{'stage':<12} {'import s':>9} {'work s':>9} {'total s':>9}")
    for name, timing in stages.items():
        print(f"{name:<12} {timing['import_s']:>9.1f} {timing['work_s']:>9.1f} {timing['total_s']:>9.1f}")
    imports = sum(t["import_s"] for t in stages.values())
    work = sum(t["work_s"] for t in stages.values())
    print(f"{'sum':<12} {imports:>9.1f} {work:>9.1f} {imports + work:>9.1f}")
    overhead = wall - imports - work
    print(
        f"end to end (wall): {wall:.1f} s (target {TARGET_S:.0f} s: {'met' if wall <= TARGET_S else 'MISSED'}); "
        f"kfp.local orchestration between tasks: {overhead:.1f} s"
    )
    train = stages["train"]["total_s"]
    print(f"ratio end to end / training step alone: {wall / train:.1f}x (train {train:.1f} s)")
    print(f"registered {pushed['version']} ({pushed['state']})")


if __name__ == "__main__":
    sys.exit(main())
