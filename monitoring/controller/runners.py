"""Where a retraining run runs: a local subprocess, or a Kubeflow Pipelines run. Neither imports the pipeline.

A runner names a run by a reference the controller chose and stored before launching it (`ref`), so after a
crash it can find out whether the launch happened (`find`) instead of launching twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kfloop.errors import KfloopError
from monitoring.controller.config import KfpConfig
from monitoring.controller.runwrap import EXIT_FILE, LAUNCHED_FILE, LOG_FILE, PID_FILE

LAUNCH_GRACE_S = 10.0
"""A launch marker without the wrapper's pid file after this long: the launch never happened."""


class RunnerError(KfloopError):
    """A run could not be started (no such pipeline, command not found, API refused)."""

    http_status = 502


@dataclass(frozen=True)
class RunEnd:
    success: bool
    detail: str
    """In words: the exit code, or the KFP run's state."""


class Runner(Protocol):
    def describe(self, ref: str) -> dict[str, Any]:
        """Where the run will be (its log, its KFP name): stored before it is launched."""
        ...

    def find(self, ref: str, details: dict[str, Any]) -> dict[str, Any] | None:
        """The run's handle if it was launched already, else None."""
        ...

    def launch(self, ref: str, details: dict[str, Any]) -> dict[str, Any]:
        """Start it; its handle (pid, run id). Raises RunnerError."""
        ...

    def poll(self, ref: str, details: dict[str, Any]) -> RunEnd | None:
        """None while it runs."""
        ...

    def stop(self, ref: str, details: dict[str, Any]) -> None: ...


def resolve_command(command: list[str]) -> list[str]:
    """A leading `kfloop` is this Python's `-m kfloop` (it finds the pipeline environment itself)."""
    return [sys.executable, "-m", "kfloop", *command[1:]] if command[0] == "kfloop" else list(command)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # absent, or a half-written file of a killed process
        return None


class LocalRunner:
    """`python -m monitoring.controller.runwrap RUN_DIR -- COMMAND` in a session of its own: it outlives the
    controller, and leaves its exit code in RUN_DIR/exit.json for whichever controller process looks next."""

    def __init__(self, runs_dir: Path, command: list[str]) -> None:
        self.runs_dir = runs_dir.resolve()  # the run's folder names its wrapper in /proc: one spelling
        self.command = resolve_command(command)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def _dir(self, ref: str) -> Path:
        return self.runs_dir / ref

    def describe(self, ref: str) -> dict[str, Any]:
        return {"run_dir": str(self._dir(ref)), "log": str(self._dir(ref) / LOG_FILE), "command": self.command}

    def find(self, ref: str, details: dict[str, Any]) -> dict[str, Any] | None:
        run_dir = self._dir(ref)
        launched = run_dir / LAUNCHED_FILE
        if not launched.exists():
            return None
        deadline = launched.stat().st_mtime + LAUNCH_GRACE_S
        while (pid := _read_json(run_dir / PID_FILE)) is None and not (run_dir / EXIT_FILE).exists():
            if time.time() > deadline:
                return None  # the controller died between the marker and the start
            time.sleep(0.05)
        return {"pid": pid["pid"]} if pid else {"pid": None}

    def launch(self, ref: str, details: dict[str, Any]) -> dict[str, Any]:
        run_dir = self._dir(ref)
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (PID_FILE, EXIT_FILE):
            (run_dir / stale).unlink(missing_ok=True)
        with open(run_dir / LAUNCHED_FILE, "w") as marker:
            marker.write(str(time.time()))
            os.fsync(marker.fileno())
        wrapper = [sys.executable, "-m", "monitoring.controller.runwrap", str(run_dir), "--", *self.command]
        with open(run_dir / "wrapper.log", "ab") as wrapper_log:
            process = subprocess.Popen(
                wrapper, stdin=subprocess.DEVNULL, stdout=wrapper_log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._children[ref] = process
        return {"pid": process.pid}

    def poll(self, ref: str, details: dict[str, Any]) -> RunEnd | None:
        child = self._children.get(ref)
        if child is not None and child.poll() is not None:  # our own child: reap it (no zombie)
            self._children.pop(ref, None)
        run_dir = self._dir(ref)
        for attempt in range(2):  # exit.json is written just before the wrapper exits: look again after
            ended = _read_json(run_dir / EXIT_FILE)
            if ended is not None:
                code = ended.get("exit_code")
                return RunEnd(code == 0, f"exit code {code}" + (f" ({ended['error']})" if ended.get("error") else ""))
            if attempt == 0 and _alive(details.get("pid"), run_dir):
                return None
        return RunEnd(False, "the run's process is gone and left no exit code (killed)")

    def stop(self, ref: str, details: dict[str, Any]) -> None:
        pid = details.get("pid")
        if _alive(pid, self._dir(ref)):
            os.killpg(pid, signal.SIGTERM)  # the wrapper's session: the wrapper and the pipeline's processes


def _alive(pid: Any, run_dir: Path) -> bool:
    """The wrapper of this run is running (a pid reused by another process does not count)."""
    if not isinstance(pid, int):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(run_dir).encode() in cmdline


_KFP_SUCCEEDED = {"SUCCEEDED"}
_KFP_FAILED = {"FAILED", "CANCELED", "CANCELLED", "SKIPPED"}  # CANCELING, PAUSED: not ended yet


class KfpRunner:
    """A run of the uploaded training pipeline's newest version, named by the controller's reference."""

    def __init__(self, config: KfpConfig) -> None:
        self.config = config

    def _client(self) -> Any:
        from kfp import Client

        token = self.config.token_file.read_text().strip() if self.config.token_file else None
        return Client(host=self.config.host, existing_token=token)

    def describe(self, ref: str) -> dict[str, Any]:
        return {"kfp_host": self.config.host, "kfp_run_name": ref, "kfp_pipeline": self.config.pipeline_name}

    def find(self, ref: str, details: dict[str, Any]) -> dict[str, Any] | None:
        client = self._client()
        try:
            experiment = client.get_experiment(experiment_name=self.config.experiment)
        except ValueError:  # no such experiment: nothing was ever run in it
            return None
        wanted = {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": ref}]}
        listed = client.list_runs(experiment_id=experiment.experiment_id, filter=json.dumps(wanted), page_size=5)
        runs = listed.runs or []
        return {"kfp_run_id": runs[0].run_id} if runs else None

    def launch(self, ref: str, details: dict[str, Any]) -> dict[str, Any]:
        client = self._client()
        experiment = client.create_experiment(name=self.config.experiment)
        pipeline_id = client.get_pipeline_id(self.config.pipeline_name)
        if pipeline_id is None:
            raise RunnerError(
                f"no pipeline named {self.config.pipeline_name!r} on {self.config.host}: upload it with "
                "`kfloop pipeline submit`"
            )
        listed = client.list_pipeline_versions(pipeline_id=pipeline_id, sort_by="created_at desc", page_size=1)
        versions = listed.pipeline_versions or []
        if not versions:
            raise RunnerError(f"pipeline {self.config.pipeline_name!r} has no version to run")
        run = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=ref,
            params=dict(self.config.parameters),
            pipeline_id=pipeline_id,
            version_id=versions[0].pipeline_version_id,
        )
        return {"kfp_run_id": run.run_id, "kfp_pipeline_version_id": versions[0].pipeline_version_id}

    def poll(self, ref: str, details: dict[str, Any]) -> RunEnd | None:
        state = str(self._client().get_run(details["kfp_run_id"]).state or "").upper()
        if state in _KFP_SUCCEEDED:
            return RunEnd(True, f"KFP run {state}")
        if state in _KFP_FAILED:
            return RunEnd(False, f"KFP run {state}")
        return None

    def stop(self, ref: str, details: dict[str, Any]) -> None:
        self._client().terminate_run(details["kfp_run_id"])
