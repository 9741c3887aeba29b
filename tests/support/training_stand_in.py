"""A real program standing in for `kfloop pipeline run --local` in the controller's tests (the real pipeline
takes minutes): it notes that it started, waits while told to, then registers a version in the model registry
(blessed or not) or fails, as its arguments say.

    python tests/support/training_stand_in.py REGISTRY CONTROL_DIR {bless|no-bless|fail}

CONTROL_DIR/starts gets one line per start (a test counts runs); while CONTROL_DIR/hold exists it waits.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from kfloop.registry import Blessing, Candidate, ModelRegistry


def main(registry_uri: str, control: Path, mode: str) -> int:
    control.mkdir(parents=True, exist_ok=True)
    with open(control / "starts", "a") as starts:
        starts.write(f"{os.getpid()}\n")
    print(f"training started (pid {os.getpid()})", flush=True)
    while (control / "hold").exists():
        time.sleep(0.02)
    if mode == "fail":
        print("training failed: the stand-in was told to fail", flush=True)
        return 3
    folder = control / f"model-{os.getpid()}"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"graph")
    candidate = Candidate(
        data_version=f"data-{os.getpid()}-{time.time_ns()}",
        schema_version="s",
        code_version="c",
        parameters={},
        blessing=Blessing(blessed=mode == "bless", reasons=[f"stand-in: {mode}"]),
        data={},
        metrics={},
        ope={},
    )
    registered = ModelRegistry(registry_uri).register(candidate, model_dir=folder, created_at=datetime.now(UTC))
    print(f"registered {registered.version} ({registered.status.state.value})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3]))
