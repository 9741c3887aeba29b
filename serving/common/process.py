"""Run a service as a real subprocess on a loopback port: for integration tests, benchmarks and local stacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

from kfloop.processes import free_port, stop_process

READY_POLL_FIRST_S = 0.05
READY_POLL_MAX_S = 0.25
"""A starting service's ready path is probed at growing intervals up to this: a model server answers (and logs)
each early probe, and at 20 a second the probes of a stack's processes cost seconds of CPU while they load."""


@dataclass(frozen=True)
class Background:
    """A lower CPU priority for a process whose work is off the request path (explanations, the audit sink)."""

    nice: int = 10
    """Nice value (used when `idle` is off or unavailable)."""
    idle: bool = True
    """Linux SCHED_IDLE: the process runs only on CPU time no normal process wants, so a burst of its work
    (an explanation is ~1-2 s of CPU) cannot take a core from rankings on a 2-core machine."""

    def apply(self, pid: int) -> None:
        """To every thread of `pid`: on Linux a thread's priority is its own (setting the process's reaches
        only its main thread), and a new thread takes its creator's, so later threads follow."""
        for tid in _threads(pid):
            try:
                if self.idle and hasattr(os, "SCHED_IDLE"):
                    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
                else:
                    os.setpriority(os.PRIO_PROCESS, tid, self.nice)
            except (ProcessLookupError, PermissionError):  # the thread ended meanwhile
                continue


def _threads(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:  # no /proc (not Linux): the process's main thread only
        return [pid]


class ServiceProcess:
    """`python -m MODULE ARGS... --host H --port P`, its output in a log file, stopped however the caller wants."""

    def __init__(
        self,
        module: str,
        args: list[str],
        *,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.command = [sys.executable, "-m", module, *args, "--host", host, "--port", str(self.port)]
        self.env = env or {}
        """Added to this process's environment (secrets go here: a command line is visible to every user)."""
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(
        self, *, ready_path: str = "/readyz", timeout_s: float = 60.0, background: Background | None = None
    ) -> Self:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reap)
        env = {**os.environ, **self.env} if self.env else None
        self._process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        wait_s = READY_POLL_FIRST_S
        while not self._answers(ready_path):
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.command} exited with {self._process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.url}{ready_path} not ready after {timeout_s}s:\n{self.output()}")
            time.sleep(wait_s)
            wait_s = min(wait_s * 1.5, READY_POLL_MAX_S)
        if background is not None:  # once it is ready: starting at full speed, then yielding to rankings
            background.apply(self._process.pid)
        return self

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (a clean shutdown), then SIGKILL if it does not exit in time; the exit code."""
        if self._process is None:
            return 0
        stop_process(self._process, timeout_s)
        return self._reap()

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        return self._reap()

    def _reap(self) -> int:
        assert self._process is not None
        code = self._process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
