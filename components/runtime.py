"""What every component does around its logic: parse its config, time the stage, quiet TensorFlow's logs.

Timing splits a task into `import` (process start until the heavy libraries are loaded: Python, the KFP
executor, TensorFlow and friends) and `work` (the rest). With `timings_dir` set (the bench does), each
stage writes `{timings_dir}/{stage}.json`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.Transform 1.16 and TFMA 0.47 need Keras 2


def load_task_config(model: type[M], config_json: str) -> M:
    """A task's own configuration, from the JSON its pipeline parameter carries; errors name the field."""
    from pydantic import ValidationError

    from kfloop.errors import ConfigError, field_errors

    try:
        return model.model_validate_json(config_json)
    except ValidationError as exc:
        problems = "; ".join(f"{e['field']}: {e['reason']}" for e in field_errors(exc))
        raise ConfigError(f"{model.__name__}: {problems}", details=field_errors(exc)) from None


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
    from importlib.util import find_spec

    digest = hashlib.sha256()
    for package in ("kfloop", "components", "pipelines"):
        # located, not imported: a component reads the pipeline's source files, never runs its code
        spec = find_spec(package)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"package {package} is not installed next to components: no code version")
        root = Path(spec.origin).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    try:
        from importlib.metadata import version

        base = version("kfloop")
    except Exception:  # running from a source tree that is not installed
        base = "0"
    return f"{base}+{digest.hexdigest()[:12]}"
