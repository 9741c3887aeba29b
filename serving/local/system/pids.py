"""Pid files that name a process exactly, and stopping a process with its whole group (Linux /proc).

A pid alone is not an identity: once a process exits, the kernel may give its number to an unrelated one. A pid
file therefore records the process's start time (clock ticks since boot, /proc/PID/stat field 22), and nothing is
signalled unless the running process with that pid started at that time. Each part runs in its own session
(`start_new_session`), so its process group (pgid = its pid) holds its children too (the serving stack's model
servers) and one signal to the group reaches them. The kernel does not reuse a number while a process group or
session still uses it, so members found in a group whose leader has exited are still ours.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

_GONE_WAIT_S = 5.0
"""How long SIGKILLed processes may take to disappear (the kernel frees their memory first)."""


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    pgid: int
    start_time: int


def proc_stat(pid: int) -> ProcStat | None:
    """The process's state, group and start time; None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ppid pgrp session ... starttime": comm may hold spaces and parentheses
    fields = text[text.rindex(")") + 2 :].split()
    return ProcStat(pid=pid, state=fields[0], pgid=int(fields[2]), start_time=int(fields[19]))


def start_time(pid: int) -> int | None:
    """The start time of a running process (an exited one awaiting its parent's wait, a zombie, is not running)."""
    stat = proc_stat(pid)
    return None if stat is None or stat.state in ("Z", "X") else stat.start_time


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds."""

    pid: int
    start_time: int
    pgid: int
    command: list[str]
    started_at: str

    @classmethod
    def of(cls, pid: int, command: list[str]) -> PidRecord:
        stat = proc_stat(pid)
        if stat is None:
            raise ProcessLookupError(f"process {pid} exited before its pid file was written")
        started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return cls(pid=pid, start_time=stat.start_time, pgid=stat.pgid, command=command, started_at=started)

    def running(self) -> bool:
        """The very process this record names is running (not merely one with the same pid)."""
        return start_time(self.pid) == self.start_time

    def group(self) -> list[int]:
        """Running members of the record's process group, if the group is still ours: its leader is this record's
        process, or the leader is gone and the group lives on (so its number was never reused)."""
        if self.pgid != self.pid:
            return [self.pid] if self.running() else []
        leader = start_time(self.pid)
        if leader is not None and leader != self.start_time:
            return []  # the number belongs to another process now, and so does any group it leads
        return group_members(self.pgid)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None and stat.pgid == pgid and stat.state not in ("Z", "X"):
                members.append(stat.pid)
    return members


def write_record(path: Path, record: PidRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(asdict(record)) + "\n")
    temp.replace(path)


def read_record(path: Path) -> PidRecord | None:
    """The record in a pid file; None if there is none or it is unreadable (a crash mid-write cannot leave one:
    records are written under another name and renamed)."""
    try:
        return PidRecord(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def _wait(condition, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def stop(record: PidRecord, timeout_s: float, child: subprocess.Popen | None = None) -> None:
    """SIGTERM to the process (it stops its own children in its own order), up to `timeout_s` for it to exit, then
    SIGKILL to whatever is left of its group. `child`: the process is ours to wait for (reaped here)."""
    if record.running():
        os.kill(record.pid, signal.SIGTERM)
        exited = (lambda: child.poll() is not None) if child is not None else (lambda: not record.running())
        _wait(exited, timeout_s)
    kill_group(record)
    if child is not None:
        child.wait()


def kill_group(record: PidRecord) -> None:
    """SIGKILL every running member of the record's group (if the group is still ours); wait until they are gone."""
    if not record.group():
        return
    try:
        if record.pgid == record.pid:
            os.killpg(record.pgid, signal.SIGKILL)
        else:
            os.kill(record.pid, signal.SIGKILL)
    except ProcessLookupError:  # gone meanwhile
        return
    _wait(lambda: not record.group(), _GONE_WAIT_S)
