"""Running `kfloop` subcommands, the simulator and the controller's API from the demo, each phase timed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from kfloop.errors import KfloopError

KFLOOP = [sys.executable, "-m", "kfloop"]


class DemoFailed(KfloopError):
    """A phase of the demo could not be done (the message names it and where its log is)."""


class Kfloop:
    """Runs `kfloop` subcommands from the repository root, each one's output kept in `logs/NAME.log`."""

    def __init__(self, repo: Path, logs: Path) -> None:
        self.repo, self.logs = repo, logs
        logs.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        self._count += 1
        log = self.logs / f"{self._count:02d}-{'-'.join(a for a in args[:2] if not a.startswith('-'))}.log"
        with open(log, "w") as handle:
            done = subprocess.run(
                [*KFLOOP, *args], stdout=subprocess.PIPE, stderr=handle, text=True, cwd=self.repo, timeout=timeout
            )
            handle.write(f"\n--- stdout\n{done.stdout}")
        if check and done.returncode != 0:
            raise DemoFailed(f"`kfloop {' '.join(args[:3])}` exited {done.returncode} (log: {log})")
        return done.stdout

    def start(self, *args: str) -> subprocess.Popen:
        """A long-running subcommand (the simulator), its output in its log."""
        handle = open(self.logs / f"{args[0]}.log", "w")  # noqa: SIM115 (the process owns it until it ends)
        return subprocess.Popen([*KFLOOP, *args], stdout=handle, stderr=subprocess.STDOUT, cwd=self.repo)


def interrupt(process: subprocess.Popen, timeout_s: float = 60) -> int:
    """Ctrl-C for a subcommand (the simulator ends its run and writes its summary), then kill if it hangs."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


class PhaseClock:
    """Each phase's start (seconds since the demo began) and duration; printed as each ends."""

    def __init__(self, out: TextIO, on_enter: Callable[[str], None] = lambda _: None) -> None:
        self.out, self.on_enter = out, on_enter
        self.began = time.monotonic()
        self.phases: list[dict[str, Any]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Times the block; the yielded dict is the phase's record (add notes to it)."""
        record: dict[str, Any] = {"name": name, "start_s": round(time.monotonic() - self.began, 1), "notes": []}
        self.on_enter(name)
        print(f"-> {name}", file=self.out, flush=True)
        try:
            yield record
        finally:
            record["seconds"] = round(time.monotonic() - self.began - record["start_s"], 1)
            self.phases.append(record)
            notes = f" ({'; '.join(record['notes'])})" if record["notes"] else ""
            print(f"<- {name}: {record['seconds']:.0f} s{notes}", file=self.out, flush=True)


def wait_until(condition: Callable[[], Any], timeout_s: float, interval_s: float = 1.0) -> Any:
    """The condition's first true value, or None after `timeout_s` (the demo goes on and says so)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if value := condition():
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval_s)


def get_json(url: str, token: str | None = None, timeout_s: float = 5.0) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as answer:
        return json.load(answer)
