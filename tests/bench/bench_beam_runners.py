"""Bench: each Beam step on the DirectRunner's running modes, on the 20,000-row OBD sample.

TFDV statistics (validate), tf.Transform analyze (transform) and TFMA (evaluate's metrics, on fixed random
predictions) each run `RUNS` times per mode, modes interleaved run by run so that a shared machine's load
falls on both alike. Prints each step's median and spread per mode and the ratio of the medians
and of each run's pair (multi_processing / in_memory, median [min-max]): what `beam.direct_running_mode`'s
default is chosen by.
Runs in the pipeline environment (re-executes itself there when started from another one).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kfloop.cli.envs import Stack, has_stack, interpreter_for

REPO = Path(__file__).resolve().parents[2]
RUNS = 3
MODES = ("in_memory", "multi_processing")


def main() -> None:
    if not has_stack(Stack.PIPELINE):
        python = interpreter_for(Stack.PIPELINE)
        os.execv(python, [str(python), __file__])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    with tempfile.TemporaryDirectory(prefix="kfloop-bench-beam-") as folder:
        root = Path(folder)
        examples = obd_examples(root)
        steps = beam_steps(examples, root)
        times: dict[str, dict[str, list[float]]] = {step: {mode: [] for mode in MODES} for step in steps}
        for run in range(RUNS):
            for step, call in steps.items():
                for mode in MODES if run % 2 == 0 else reversed(MODES):
                    started = time.perf_counter()
                    call(mode, root / f"{step}-{mode}-{run}")
                    times[step][mode].append(time.perf_counter() - started)
                    print(f"  run {run + 1} {step:<11} {mode:<17} {times[step][mode][-1]:6.1f} s", flush=True)
    report(times)


def obd_examples(root: Path) -> Path:
    """ExampleGen's artifact of the whole OBD sample (both logs), in a fresh event log."""
    from components.examplegen.logic import generate
    from kfloop.data import fetch_obd, import_obd
    from kfloop.eventlog import EventLog, EventLogConfig
    from pipelines.config import PipelineConfig

    data_dir = REPO / "data"
    fetch_obd(data_dir, progress=lambda _: None)
    log = EventLogConfig(wal_dir=root / "wal", log_uri=str(root / "events"))
    with EventLog(log, writer_id="obd") as writer:
        import_obd(data_dir, writer, progress=lambda _: None)
    config = PipelineConfig.model_validate(
        {
            "features": {
                "event_log": log.model_dump(mode="json"),
                "store": {"repo_dir": str(root / "feast"), "obd_data_dir": str(data_dir)},
            },
            "registry": {"uri": str(root / "registry")},
        }
    )
    generate(config.examplegen_task(), root / "examples", now=datetime.now(UTC))
    return root / "examples"


def beam_steps(examples: Path, root: Path) -> dict[str, Callable[[str, Path], object]]:
    """{step: call(mode, out_dir)}: each step's Beam work alone, as its component runs it."""
    import numpy as np
    import tensorflow_data_validation  # noqa: F401  (imported before timing: every step's component has them loaded)
    import tensorflow_model_analysis  # noqa: F401
    import tensorflow_transform.beam  # noqa: F401

    from components import examples_io
    from components.beam import BeamConfig
    from components.contract import DEFAULT_SCHEMA
    from components.evaluate.config import EvaluateConfig
    from components.evaluate.metrics import tfma_metrics
    from components.transform.config import TransformConfig
    from components.transform.logic import analyze
    from components.validate.logic import load_schema
    from components.validate.stats import split_statistics

    schema = load_schema(DEFAULT_SCHEMA)
    evaluation = examples_io.read_split(examples, "eval")
    predictions = {"candidate": np.random.default_rng(7).uniform(0.001, 0.05, len(evaluation))}

    def beam(mode: str) -> BeamConfig:
        return BeamConfig(direct_running_mode=mode, workers=1 if mode == "in_memory" else os.cpu_count() or 1)

    return {
        "statistics": lambda mode, out: split_statistics(examples, examples_io.SPLITS, beam(mode)),
        "analyze": lambda mode, out: analyze(examples, schema, TransformConfig(), out, beam=beam(mode)),
        "tfma": lambda mode, out: tfma_metrics(evaluation, predictions, EvaluateConfig(), out, beam(mode)),
    }


def report(times: dict[str, dict[str, list[float]]]) -> None:
    print(f"Beam steps on the DirectRunner, OBD sample, {RUNS} runs per mode, {os.cpu_count()} cores")
    header = " ".join(f"{mode + ' median [min-max] s':>36}" for mode in MODES)
    print(f"{'step':<11} {header}  {'paired ratio mp/im median [min-max]':>36}")
    for step, by_mode in times.items():
        cells = [f"{statistics.median(t):>10.1f} [{min(t):6.1f} - {max(t):6.1f}]" for t in by_mode.values()]
        pairs = [mp / im for im, mp in zip(by_mode[MODES[0]], by_mode[MODES[1]], strict=True)]
        cells.append(f"{statistics.median(pairs):>10.2f} [{min(pairs):6.2f} - {max(pairs):6.2f}]")
        print(f"{step:<11} " + " ".join(f"{cell:>36}" for cell in cells))


if __name__ == "__main__":
    sys.exit(main())
