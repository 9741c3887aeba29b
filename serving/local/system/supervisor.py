"""`kfloop up`: one supervisor for the whole local system (collector, feature follower, joiner, serving stack,
controller, Alertmanager, Prometheus, ...).

Parts start in dependency order, side by side where their dependencies allow, each gated on its readiness URLs.
While the system comes up, a part that fails to start stops everything (the failing part's log tail is printed).
Once it is up, a part that dies is restarted with backoff and the restart counted. A serving part waits, reported
as waiting, until a model can be served. SIGTERM or SIGINT stops the parts in reverse order, each with its process
group. The supervisor's pid file, each part's pid file and the status file live in `{state_dir}/system/`, and
Prometheus's target files (targets.py), kept current as the serving stack's processes come and go.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfloop.errors import KfloopError
from serving.local.system import pids
from serving.local.system.config import SystemConfig, SystemPaths, effective_config
from serving.local.system.part import Part, State
from serving.local.system.report import log_tail, summary_lines
from serving.local.system.targets import TargetFiles, part_targets, read_endpoints, serving_targets

GATE_INTERVAL_S = 2.0
"""How often a closed gate (no model yet) is looked at again."""


class AlreadyRunning(KfloopError):
    """A supervisor already runs on this state directory."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Supervisor:
    def __init__(self, config: SystemConfig, *, notes: list[str] = (), out: Callable[[str], None] = print) -> None:
        self.config = config
        self.paths = SystemPaths(config.state_dir)
        self.notes = list(notes)
        self.out = out
        ports = config.ports()
        self.parts = [
            Part(p, self.paths, config.restart_backoff_s, config.restart_backoff_max_s, ports) for p in config.ordered()
        ]
        self.targets = TargetFiles(self.paths.targets)
        self.phase = "starting"
        self.failure: dict[str, str] | None = None
        self.started_at = now_iso()
        self._gate_checked: dict[str, float] = {}
        self._serving_state_dir: str | None = None
        self._last_status: dict[str, Any] | None = None

    # -- the supervisor's own pid file, and what a dead one left behind ------------------------------------------
    def claim(self) -> None:
        """Refuse if a supervisor runs on this state directory; stop the parts a dead one left running."""
        mine = pids.read_record(self.paths.supervisor_pid)
        if mine is not None and mine.running():
            raise AlreadyRunning(
                f"the local system already runs on {self.paths.state_dir} (supervisor pid {mine.pid}): "
                "`kfloop status` shows it, `kfloop down` stops it"
            )
        for path in sorted(self.paths.pids.glob("*.json")) if self.paths.pids.exists() else []:
            record = pids.read_record(path)
            if record is not None and record.group():
                self.out(f"stopping {path.stem} (pid {record.pid}), left running by a supervisor that died")
                pids.stop(record, timeout_s=30)
            path.unlink(missing_ok=True)
        pids.write_record(self.paths.supervisor_pid, pids.PidRecord.of(os.getpid(), ["kfloop", "up"]))

    def release(self) -> None:
        mine = pids.read_record(self.paths.supervisor_pid)
        if mine is not None and mine.pid == os.getpid():
            self.paths.supervisor_pid.unlink(missing_ok=True)

    # -- the loop -------------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        """Until `stop` is set (or, while starting, a part fails); then every part is stopped. The exit code."""
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        self.claim()
        try:
            for note in self.notes:
                self.out(note)
            self.targets.reset()
            self.write_status()
            while self.phase in ("starting", "up") and not stop.is_set():
                self.tick(time.monotonic())
                self.write_status()
                stop.wait(self.config.poll_interval_s)
        finally:
            failed = self.phase == "failed"
            self.phase = "stopping"
            self.write_status()
            self.stop_all()
            self.phase = "failed" if failed else "stopped"
            self.write_status()
            self.release()
        return 1 if failed else 0

    def tick(self, now: float) -> None:
        self._advance(now)
        self.refresh_targets()

    def _advance(self, now: float) -> None:
        for part in self.parts:
            if part.state in (State.PENDING, State.WAITING):
                self._maybe_start(part, now)
            else:
                self._say(part.advance(now, restart=self.phase == "up" or part.ever_ready))
            if self.phase == "starting" and part.state is State.FAILED:
                self._fail(part)
                return
        if self.phase == "starting" and all(p.state in (State.READY, State.DONE, State.WAITING) for p in self.parts):
            self.phase = "up"
            for line in summary_lines(self.status()):
                self.out(line)

    def _maybe_start(self, part: Part, now: float) -> None:
        by_name = {p.name: p for p in self.parts}
        after = [by_name[a] for a in part.config.after]
        blocked = [p.name for p in after if p.state is State.WAITING]
        if blocked:  # waits as long as they do (the system is up meanwhile)
            part.state, part.detail = State.WAITING, f"starts after {', '.join(blocked)}"
            return
        if not all(p.state in (State.READY, State.DONE) for p in after):
            part.state, part.detail = State.PENDING, ""
            return
        try:
            waiting = self._gate(part, now)
        except KfloopError as exc:  # e.g. its serving config is invalid: the part could not start anyway
            part.state, part.detail = State.FAILED, exc.message
            return
        if waiting is not None:
            if part.state is not State.WAITING or waiting != part.detail:
                self.out(f"{part.name}: waiting: {waiting}")
            part.state, part.detail = State.WAITING, waiting
            return
        conflict = part.conflict() if not part.ever_ready and part.restarts == 0 else None
        if conflict is not None:
            part.state, part.detail = State.FAILED, conflict
            if self.phase == "up":  # while starting, the failure stops the system and says why
                self.out(f"{part.name}: failed: {conflict}")
            return
        product = part.product()
        if product is not None and product.exists():
            part.state, part.detail = State.DONE, f"skipped: {product} exists"
            self.out(f"{part.name}: {part.detail}")
            return
        self.out(f"{part.name}: starting: {part.command_text()}  (log: {part.log_path})")
        part.start()

    def _gate(self, part: Part, now: float) -> str | None:
        """Why the part cannot start yet (only a serving part waits: for a deployable model)."""
        if part.config.kind != "serving":
            return None
        if part.state is State.WAITING and now - self._gate_checked.get(part.name, 0.0) < GATE_INTERVAL_S:
            return part.detail
        self._gate_checked[part.name] = now
        from serving.local.system.serving_view import ServingView

        view = ServingView(effective_config(part.config, self.paths, part.ports))
        self._serving_state_dir = str(view.state_dir)
        return view.waiting_for()

    def refresh_targets(self) -> None:
        """Prometheus's target files: every part with metrics, and the serving stack's processes while it runs."""
        groups = part_targets(self.config.parts)
        serving = next((p for p in self.parts if p.config.kind == "serving"), None)
        if serving is not None:
            groups |= serving_targets(self._serving_endpoints(serving))
        self.targets.write(groups)

    def _serving_endpoints(self, serving: Part) -> dict[str, Any] | None:
        if serving.state not in (State.STARTING, State.READY) or self._serving_state_dir is None:
            return None
        from serving.local.stack.supervisor import ENDPOINTS_FILE

        return read_endpoints(Path(self._serving_state_dir) / ENDPOINTS_FILE, serving.started_epoch)

    def _fail(self, part: Part) -> None:
        self.failure = {"part": part.name, "reason": part.detail, "log": str(part.log_path)}
        self.phase = "failed"
        self.out(f"kfloop up: {part.name} failed: {part.detail}; stopping the rest")
        self.out(f"--- the last lines of {part.log_path} ---")
        self.out(log_tail(part.log_path))

    def _say(self, line: str | None) -> None:
        if line:
            self.out(line)

    def stop_all(self) -> None:
        """Stop the parts in reverse dependency order: the serving stack drains into the collector last."""
        for part in reversed(self.parts):
            if part.pid is not None:
                self.out(f"{part.name}: stopping (pid {part.pid})")
                part.stop()
            if part.state is not State.FAILED:
                part.state = State.STOPPED

    # -- the status file --------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "supervisor": {
                "pid": os.getpid(),
                "phase": self.phase,
                "started_at": self.started_at,
                "log": str(self.paths.supervisor_log),
            },
            "state_dir": str(self.paths.state_dir),
            "failure": self.failure,
            "notes": self.notes,
            "serving_state_dir": self._serving_state_dir,
            "stop_budget_s": sum(p.config.stop_timeout_s for p in self.parts),
            "parts": [p.snapshot() for p in self.parts],
        }

    def write_status(self) -> None:
        status = self.status()
        if status == self._last_status:
            return
        self._last_status = status
        path = self.paths.status
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(json.dumps({**status, "updated_at": now_iso()}, indent=2) + "\n")
        temp.replace(path)
