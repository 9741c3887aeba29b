"""What every component does around its logic: parse the config, time the stage, quiet TensorFlow's logs.

Timing splits a task into `import` (process start until the heavy libraries are loaded: Python, the KFP
executor, TensorFlow and friends) and `work` (the rest). With `timings_dir` set (the bench does), each
stage writes `{timings_dir}/{stage}.json`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.Transform 1.16 and TFMA 0.47 need Keras 2


def load_pipeline_config(config_json: str) -> Any:
    from pipelines.config import PipelineConfig

    return PipelineConfig.model_validate_json(config_json)


def _process_start() -> float:
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # psutil missing or no /proc: count from now
        return time.time()


class StageTimer:
    """Marks a stage's process start, the end of its imports and its end."""

    def __init__(self, stage: str, timings_dir: str = "") -> None:
        self.stage = stage
        self.timings_dir = timings_dir
        self.started = _process_start()
        self.imported = time.time()

    def imports_done(self) -> None:
        self.imported = time.time()

    def finish(self, **extra: Any) -> dict[str, Any]:
        finished = time.time()
        timing = {
            "stage": self.stage,
            "import_s": round(self.imported - self.started, 3),
            "work_s": round(finished - self.imported, 3),
            "total_s": round(finished - self.started, 3),
            "started": self.started,
            "finished": finished,
            **extra,
        }
        print(f"kfloop stage {self.stage}: import {timing['import_s']} s, work {timing['work_s']} s", flush=True)
        if self.timings_dir:
            folder = Path(self.timings_dir)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{self.stage}.json").write_text(json.dumps(timing) + "\n")
        return timing


def code_version() -> str:
    """The package version plus a hash of the pipeline's own source (kfloop/, components/, pipelines/)."""
    import hashlib

    import components
    import kfloop
    import pipelines

    digest = hashlib.sha256()
    for package in (kfloop, components, pipelines):
        root = Path(package.__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    try:
        from importlib.metadata import version

        base = version("kfloop")
    except Exception:  # running from a source tree that is not installed
        base = "0"
    return f"{base}+{digest.hexdigest()[:12]}"
