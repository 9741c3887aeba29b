"""Pid files name a process exactly (a reused pid is never signalled), and stopping a part takes its whole process
group (children it left behind too)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time

import pytest

from serving.local.system import pids


def spawn(script: str) -> subprocess.Popen:
    """A shell in a session of its own (as the supervisor starts a part), running `script`."""
    return subprocess.Popen(["sh", "-c", script], start_new_session=True)


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def group():
    """A leader with two children in its group; whatever is left is killed at the end."""
    leader = spawn("sleep 60 & sleep 60 & wait")
    wait_for(lambda: len(pids.group_members(leader.pid)) == 3)
    yield leader
    for pid in pids.group_members(leader.pid):
        os.kill(pid, signal.SIGKILL)
    leader.wait()


def test_a_record_names_the_running_process_by_pid_and_start_time():
    record = pids.PidRecord.of(os.getpid(), ["pytest"])
    assert record.running()
    assert record.start_time == pids.proc_stat(os.getpid()).start_time
    assert not dataclasses.replace(record, start_time=record.start_time + 1).running()


def test_a_reused_pid_is_never_signalled(group):
    """A pid file whose start time differs from the process now holding that pid stops nothing."""
    record = pids.PidRecord.of(group.pid, ["sh"])
    reused = dataclasses.replace(record, start_time=record.start_time - 1)
    assert reused.group() == []
    pids.stop(reused, timeout_s=1)
    assert group.poll() is None
    assert len(pids.group_members(group.pid)) == 3


def test_stop_takes_the_children_of_the_group_too(group):
    children = [p for p in pids.group_members(group.pid) if p != group.pid]
    record = pids.PidRecord.of(group.pid, ["sh"])
    pids.stop(record, timeout_s=5, child=group)
    assert group.returncode is not None
    assert pids.group_members(group.pid) == []
    assert all(pids.start_time(pid) is None for pid in children)


def test_a_group_whose_leader_died_is_still_ours_and_is_killed(group):
    record = pids.PidRecord.of(group.pid, ["sh"])
    os.kill(group.pid, signal.SIGKILL)
    group.wait()
    assert not record.running()
    assert len(record.group()) == 2  # the orphaned children keep the group (and its number) alive
    pids.kill_group(record)
    assert record.group() == [] and pids.group_members(group.pid) == []


def test_an_exited_unreaped_process_is_not_running():
    child = subprocess.Popen(["sh", "-c", "exit 3"])
    wait_for(lambda: pids.proc_stat(child.pid) is not None and pids.proc_stat(child.pid).state == "Z")
    assert pids.start_time(child.pid) is None
    child.wait()
    assert pids.proc_stat(child.pid) is None


def test_a_process_outside_its_own_group_is_stopped_alone():
    """A record whose pgid is not its pid (a foreground supervisor in the user's shell job) never signals a group."""
    child = subprocess.Popen(["sleep", "60"])  # in pytest's own group
    try:
        record = pids.PidRecord.of(child.pid, ["sleep"])
        assert record.pgid == os.getpgid(0) != child.pid
        assert record.group() == [child.pid]
        pids.stop(record, timeout_s=5, child=child)
        assert child.returncode == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()


def test_records_round_trip_and_a_damaged_file_reads_as_none(tmp_path):
    record = pids.PidRecord.of(os.getpid(), ["kfloop", "up"])
    path = tmp_path / "pids" / "p.json"
    pids.write_record(path, record)
    assert pids.read_record(path) == record
    path.write_text("{not json")
    assert pids.read_record(path) is None
    path.write_text('{"pid": 1}')
    assert pids.read_record(path) is None
    assert pids.read_record(tmp_path / "none.json") is None
