"""`python -m monitoring.controller.runwrap RUN_DIR -- COMMAND...`: run COMMAND with its output in RUN_DIR/log,
and leave RUN_DIR/exit.json when it ends.

The controller starts a retraining run through this wrapper, in a session of its own, so the run outlives a
controller that is killed, and its exit code outlives both: a process that is not one's child has no exit
status to wait for, so the wrapper writes it down. Its first act is RUN_DIR/pid.json (its pid), which tells
a restarted controller that the launch happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

LAUNCHED_FILE = "launched"
"""Written (fsynced) by the controller just before it starts the wrapper."""
PID_FILE = "pid.json"
EXIT_FILE = "exit.json"
LOG_FILE = "log"


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temp, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def run(run_dir: Path, command: list[str]) -> int:
    write_atomically(run_dir / PID_FILE, {"pid": os.getpid(), "started_at": time.time()})
    with open(run_dir / LOG_FILE, "ab") as log:
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:  # not found, not executable: an exit code like a shell's
            write_atomically(run_dir / EXIT_FILE, {"exit_code": 127, "error": str(exc), "ended_at": time.time()})
            return 127
        # A stop (SIGTERM to the session) reaches the command too; the wrapper stays to write its exit code.
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
        code = child.wait()
    write_atomically(run_dir / EXIT_FILE, {"exit_code": code, "ended_at": time.time()})
    return code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m monitoring.controller.runwrap RUN_DIR -- COMMAND...", file=sys.stderr)
        return 2
    return run(Path(args[0]), args[2:])


if __name__ == "__main__":
    sys.exit(main())
