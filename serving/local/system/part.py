"""One part of the local system at run time: its process (in a process group of its own), pid file, log,
readiness and restarts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from kfloop.errors import KfloopError
from serving.local.system import pids
from serving.local.system.config import (
    KFLOOP,
    PartConfig,
    Ports,
    SystemPaths,
    command_line,
    concrete,
    effective_config,
)

HEALTH_INTERVAL_S = 5.0
"""How often a ready part's health URL is probed (each probe may take HEALTH_TIMEOUT_S)."""
HEALTH_TIMEOUT_S = 2.0
HEALTH_FAILURES = 3
"""A ready part whose health URL fails this many probes in a row is restarted."""
READY_PROBE_INTERVAL_S = 1.0
"""How often a starting part's readiness URLs are probed (a model server logs each refused probe at length)."""


class State(StrEnum):
    PENDING = "pending"  # its dependencies are not ready yet
    WAITING = "waiting"  # no model deployed yet, or a part it starts after waits; `detail` says why
    STARTING = "starting"
    READY = "ready"
    DONE = "done"  # a once step that exited 0
    BACKOFF = "backoff"  # died; restarted at `restart_at`
    FAILED = "failed"  # could not start (while the system comes up, that stops it); `detail` says why
    STOPPED = "stopped"


def probe(url: str, timeout_s: float = 1.0) -> bool:
    """The URL answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Part:
    def __init__(
        self,
        config: PartConfig,
        paths: SystemPaths,
        backoff_s: float,
        backoff_max_s: float,
        ports: Ports | None = None,
    ) -> None:
        self.config = config
        self.paths = paths
        self.ports = ports or {}
        """Every part's port, for the `{port:NAME}` placeholders."""
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.state = State.PENDING
        self.detail = ""
        """Why it waits, or why it failed."""
        self.last_exit = ""
        """How it last died, if it did."""
        self.restarts = 0
        self.failures = 0
        """Consecutive deaths without becoming ready in between (the backoff doubles with each)."""
        self.ever_ready = False
        self.started_at = 0.0
        self.started_epoch = 0.0
        """Wall-clock time of its last start (files it writes are younger)."""
        self.restart_at = 0.0
        self.health_at = 0.0
        self.probe_at = 0.0
        self.health_failures = 0
        self.config_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._record: pids.PidRecord | None = None
        self._log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def log_path(self) -> Path:
        return self.paths.log(self.name)

    @property
    def pid(self) -> int | None:
        return self._record.pid if self._record is not None else None

    def argv(self) -> list[str]:
        command = command_line(self.config, self.paths.state_dir, self.ports)
        if command[0] == KFLOOP:
            command = [sys.executable, "-m", KFLOOP, *command[1:]]
        if self.config_path is not None:
            command += [self.config.config_flag, str(self.config_path)]
        return command

    def command_text(self) -> str:
        """Its command as configured, placeholders filled in (a `kfloop` part keeps its short form)."""
        return " ".join(command_line(self.config, self.paths.state_dir, self.ports))

    def conflict(self) -> str | None:
        """Why the part cannot start: another process holds its port (checked before its first start only: a
        restart follows its own process group's end)."""
        port = self.config.port
        if port is not None and port_in_use(port):
            return f"port {port} is already in use by another process (a system still running? `kfloop status`)"
        return None

    def start(self) -> None:
        """Start its process in a session (and process group) of its own, output to its log, and record its pid
        file. A part that cannot even be started (its config unreadable, its program not runnable) has failed."""
        try:
            self.config_path = effective_config(self.config, self.paths, self.ports)
            self.started_epoch = time.time()
            self._spawn()
        except (KfloopError, OSError) as exc:
            self._reaped()
            self.state, self.detail = State.FAILED, f"cannot start: {getattr(exc, 'message', exc)}"
            return
        self.state, self.detail, self.started_at = State.STARTING, "", time.monotonic()

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reaped)
        argv = self.argv()
        self._log.write(f"\n=== kfloop up: starting {self.name} ({time.ctime()}): {' '.join(argv)}\n".encode())
        self._log.flush()
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._record = pids.PidRecord.of(self._process.pid, argv)
            pids.write_record(self.paths.pid(self.name), self._record)
        except ProcessLookupError:  # it died at once: the next look sees its exit code
            self._record = None

    def advance(self, now: float, *, restart: bool) -> str | None:
        """One look at a started part: readiness, exit, timeout, a due restart. A service that dies is restarted
        after the backoff if `restart`, else it has failed. Returns a line worth printing when its state changed."""
        code = self.exit_code()
        c = self.config
        if self.state is State.STARTING:
            if code == 0 and c.run == "once":
                self._reaped()
                self.state = State.DONE
                return f"{self.name}: done in {now - self.started_at:.1f} s"
            if code is not None:
                return self._died(now, f"exited with {code} before it was ready", restart)
            if c.run == "service" and self._probe_due(now) and self.ready_now():
                self.state, self.ever_ready, self.failures = State.READY, True, 0
                self.health_at, self.health_failures = now + HEALTH_INTERVAL_S, 0
                return f"{self.name}: ready in {now - self.started_at:.1f} s"
            if now - self.started_at > c.start_timeout_s:
                reason = f"not {'done' if c.run == 'once' else 'ready'} after {c.start_timeout_s:g} s"
                return self._died(now, reason, restart)
        elif self.state is State.READY and code is not None:
            return self._died(now, f"exited with {code}", restart)
        elif self.state is State.READY and not self._healthy(now):
            return self._died(now, f"{c.health_url} failed {HEALTH_FAILURES} probes in a row", restart)
        elif self.state is State.BACKOFF and now >= self.restart_at:
            self.restarts += 1
            self.start()
            return f"{self.name}: restarting (restart {self.restarts})"
        return None

    def _probe_due(self, now: float) -> bool:
        if now < self.probe_at:
            return False
        self.probe_at = now + READY_PROBE_INTERVAL_S
        return True

    def _healthy(self, now: float) -> bool:
        """False once the health URL has failed HEALTH_FAILURES probes in a row (probed HEALTH_INTERVAL_S apart)."""
        if self.config.health_url is None or now < self.health_at:
            return True
        self.health_at = now + HEALTH_INTERVAL_S
        self.health_failures = 0 if probe(self.config.health_url, HEALTH_TIMEOUT_S) else self.health_failures + 1
        return self.health_failures < HEALTH_FAILURES

    def product(self) -> Path | None:
        """What a once step creates (`creates`): while it exists, the step is done."""
        creates = self.config.creates
        return Path(concrete(creates, self.paths.state_dir)) if creates is not None else None

    def _died(self, now: float, reason: str, restart: bool) -> str:
        """Stop what is left of its process group; then a restart after the backoff, or (a once step, or no
        `restart`) the part has failed."""
        self.stop()
        self.failures += 1
        self.last_exit = reason
        if self.config.run == "once" or not restart:
            self.state, self.detail = State.FAILED, reason
            return f"{self.name}: failed: {reason}"
        wait = min(self.backoff_s * 2 ** (self.failures - 1), self.backoff_max_s)
        self.state, self.restart_at = State.BACKOFF, now + wait
        return f"{self.name}: {reason}; restarting in {wait:.1f} s (log: {self.log_path})"

    def exit_code(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def ready_now(self) -> bool:
        return all(probe(url) for url in self.config.ready_urls)

    def stop(self) -> None:
        """Stop the process and every process of its group; forget the pid file."""
        if self._process is not None and self._record is not None:
            pids.stop(self._record, self.config.stop_timeout_s, child=self._process)
        elif self._process is not None:
            self._process.wait()
        self._reaped()

    def _reaped(self) -> None:
        self.paths.pid(self.name).unlink(missing_ok=True)
        self._process, self._record = None, None
        if self._log is not None:
            self._log.close()
            self._log = None

    def snapshot(self) -> dict[str, Any]:
        """What the status file says about the part."""
        c = self.config
        return {
            "name": self.name,
            "run": c.run,
            "kind": c.kind,
            "state": self.state.value,
            "detail": self.detail,
            "last_exit": self.last_exit,
            "pid": self.pid,
            "restarts": self.restarts,
            "port": c.port,
            "ready_urls": c.ready_urls,
            "metrics_url": c.metrics_url,
            "log": str(self.log_path),
            "config": str(self.config_path) if self.config_path else None,
        }
