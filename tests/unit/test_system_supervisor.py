"""The supervisor of `kfloop up` with small real processes as parts (no servers): dependency order, restarts of a
part that dies, a failed start stopping the rest, the wait for a model, and `kfloop down` after a dead supervisor."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from kfloop.deploy.state import InferenceServiceRef, Placement, ServingState, write_state
from serving.local.system import control, pids
from serving.local.system.config import SystemConfig, SystemPaths
from serving.local.system.supervisor import AlreadyRunning, Supervisor

pytestmark = pytest.mark.serving
SLEEP = ["sleep", "60"]


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Running:
    """A supervisor in a thread of the test; its printed lines in `lines`."""

    def __init__(self, config: SystemConfig) -> None:
        self.lines: list[str] = []
        self.supervisor = Supervisor(config, out=self.lines.append)
        self.paths = self.supervisor.paths
        self.stop = threading.Event()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.supervisor.run(self.stop)

    def status(self) -> dict:
        return control.read_status(self.paths) or {"supervisor": {"phase": None}, "parts": []}

    def part(self, name: str) -> dict:
        return next(p for p in self.status()["parts"] if p["name"] == name)

    def wait_phase(self, phase: str) -> None:
        wait_for(lambda: self.status()["supervisor"]["phase"] == phase)

    def finish(self) -> int | None:
        self.stop.set()
        self.thread.join(60)
        return self.code


def system(tmp_path: Path, *parts: dict, **fields) -> SystemConfig:
    return SystemConfig.model_validate(
        {"state_dir": tmp_path / "state", "parts": list(parts), "restart_backoff_s": 0.1, **fields}
    )


def test_parts_start_in_order_and_a_killed_part_is_restarted_and_counted(tmp_path):
    marker = tmp_path / "setup.done"
    config = system(
        tmp_path,
        {"name": "svc", "command": SLEEP, "after": ["setup"]},
        {"name": "setup", "run": "once", "command": ["sh", "-c", f"sleep 0.3; touch {marker}"]},
    )
    running = Running(config)
    try:
        running.wait_phase("up")
        assert marker.exists()
        assert [running.part(n)["state"] for n in ("setup", "svc")] == ["done", "ready"]
        first = pids.read_record(running.paths.pid("svc"))
        assert first.pid == running.part("svc")["pid"] and first.running()
        os.kill(first.pid, signal.SIGKILL)
        wait_for(lambda: running.part("svc")["restarts"] == 1 and running.part("svc")["state"] == "ready")
        second = pids.read_record(running.paths.pid("svc"))
        assert second.pid != first.pid and second.running()
        assert running.part("svc")["last_exit"] == f"exited with {-signal.SIGKILL}"
    finally:
        assert running.finish() == 0
    assert not second.running() and pids.group_members(second.pid) == []
    assert list(running.paths.pids.glob("*.json")) == [] and not running.paths.supervisor_pid.exists()
    assert running.status()["supervisor"]["phase"] == "stopped"


def test_a_once_step_whose_product_exists_is_skipped(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "made").touch()
    ran = tmp_path / "ran"
    config = system(
        tmp_path, {"name": "make", "run": "once", "command": ["touch", str(ran)], "creates": "{state_dir}/made"}
    )
    running = Running(config)
    try:
        running.wait_phase("up")
        assert running.part("make")["state"] == "done" and not ran.exists()
        assert f"make: skipped: {tmp_path}/state/made exists" in running.lines
    finally:
        running.finish()


def test_a_ready_part_failing_its_health_checks_is_restarted(tmp_path, monkeypatch):
    monkeypatch.setattr("serving.local.system.part.HEALTH_INTERVAL_S", 0.1)
    config = system(tmp_path, {"name": "hung", "command": SLEEP, "health_url": "http://127.0.0.1:9/healthz"})
    running = Running(config)
    try:
        running.wait_phase("up")
        first = running.part("hung")["pid"]
        wait_for(lambda: running.part("hung")["restarts"] >= 1)
        assert running.part("hung")["last_exit"] == "http://127.0.0.1:9/healthz failed 3 probes in a row"
        assert pids.start_time(first) is None
    finally:
        running.finish()


def test_a_part_failing_to_start_stops_the_rest_and_shows_its_log(tmp_path):
    config = system(
        tmp_path,
        {"name": "first", "command": SLEEP},
        {"name": "broken", "command": ["sh", "-c", "echo cannot open the thing; exit 3"], "after": ["first"]},
    )
    running = Running(config)
    running.thread.join(30)
    assert running.code == 1
    status = running.status()
    assert status["supervisor"]["phase"] == "failed"
    assert status["failure"]["part"] == "broken"
    assert "exited with 3" in status["failure"]["reason"]
    assert any("cannot open the thing" in line for line in running.lines)
    first = next(p for p in status["parts"] if p["name"] == "first")
    assert first["state"] == "stopped" and list(running.paths.pids.glob("*.json")) == []


def test_a_part_not_ready_in_time_fails_and_is_killed(tmp_path):
    config = system(
        tmp_path,
        {"name": "slow", "command": SLEEP, "ready_urls": ["http://127.0.0.1:9/never"], "start_timeout_s": 0.5},
    )
    running = Running(config)
    running.thread.join(30)
    assert running.code == 1
    assert running.status()["failure"]["reason"] == "not ready after 0.5 s"
    assert "slow: failed: not ready after 0.5 s" in running.lines


def test_a_port_held_by_another_process_is_a_clear_error(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        config = system(
            tmp_path, {"name": "web", "command": SLEEP, "port": port, "ready_urls": [f"http://127.0.0.1:{port}/"]}
        )
        running = Running(config)
        running.thread.join(30)
    assert running.code == 1
    assert running.status()["failure"]["reason"].startswith(f"port {port} is already in use by another process")


def test_one_supervisor_per_state_directory(tmp_path):
    running = Running(system(tmp_path, {"name": "svc", "command": SLEEP}))
    try:
        running.wait_phase("up")
        with pytest.raises(AlreadyRunning, match="`kfloop down` stops it"):
            Supervisor(system(tmp_path, {"name": "svc", "command": SLEEP})).claim()
    finally:
        running.finish()


def serving_config(tmp_path: Path) -> Path:
    path = tmp_path / "serving.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "predictor": {"registry_uri": str(tmp_path / "registry")},
                "stack": {"state_dir": str(tmp_path / "serving")},
            }
        )
    )
    return path


def test_serving_waits_for_a_model_and_starts_once_one_is_deployed(tmp_path):
    takes_config = ["sh", "-c", "sleep 60", "serving"]  # `--config FILE` is appended: $1 and $2 of the script
    config = system(
        tmp_path,
        {"name": "serving", "kind": "serving", "command": takes_config, "config_file": serving_config(tmp_path)},
        {"name": "later", "command": SLEEP, "after": ["serving"]},
    )
    running = Running(config)
    try:
        running.wait_phase("up")  # the system is up while serving waits
        waiting = running.part("serving")
        assert waiting["state"] == "waiting"
        assert "no deployable model" in waiting["detail"] and "kfloop pipeline run --local" in waiting["detail"]
        assert running.status()["serving_state_dir"] == str(tmp_path / "serving")
        assert (running.part("later")["state"], running.part("later")["detail"]) == ("waiting", "starts after serving")
        stable = Placement(version="v20260101T000000Z-00000000", since="2026-01-01T00:00:00Z")
        ref = InferenceServiceRef(name="kfloop-ranker", namespace="kfloop")
        write_state(tmp_path / "serving", ServingState(inference_service=ref, stable=stable))
        wait_for(lambda: running.part("serving")["state"] == running.part("later")["state"] == "ready")
    finally:
        assert running.finish() == 0


def leftover(paths: SystemPaths, name: str) -> subprocess.Popen:
    """A part left running by a supervisor that died: its own session, a child, and a pid file."""
    process = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    wait_for(lambda: len(pids.group_members(process.pid)) == 2)
    pids.write_record(paths.pid(name), pids.PidRecord.of(process.pid, ["sh"]))
    return process


def test_a_new_supervisor_first_stops_the_parts_a_dead_one_left(tmp_path):
    paths = SystemPaths(tmp_path / "state")
    left = leftover(paths, "svc")
    running = Running(system(tmp_path, {"name": "svc", "command": SLEEP}))
    try:
        running.wait_phase("up")
        left.wait(10)
        assert pids.group_members(left.pid) == []
        assert any("left running by a supervisor that died" in line for line in running.lines)
        assert running.part("svc")["pid"] != left.pid
    finally:
        running.finish()


def test_a_part_whose_program_cannot_run_fails_the_start(tmp_path):
    not_executable = tmp_path / "prog"
    not_executable.write_text("#!/bin/sh\n")
    running = Running(system(tmp_path, {"name": "p", "command": [str(not_executable)]}))
    running.thread.join(30)
    assert running.code == 1
    assert running.status()["failure"]["reason"].startswith("cannot start: [Errno 13] Permission denied")


def test_down_after_a_dead_supervisor_stops_its_parts_by_pid_file_and_nothing_else(tmp_path):
    paths = SystemPaths(tmp_path / "state")
    parts = [leftover(paths, "a"), leftover(paths, "b")]
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    reused = dataclasses.replace(pids.PidRecord.of(stranger.pid, ["sleep"]), start_time=1)
    pids.write_record(paths.pid("reused"), reused)
    pids.write_record(paths.supervisor_pid, reused)
    try:
        lines: list[str] = []
        assert control.down(paths, out=lines.append) == 2
        for process in parts:
            process.wait(10)
            assert pids.group_members(process.pid) == []
        assert stranger.poll() is None  # its pid was in a pid file, but it is not the process that was started
        assert list(paths.pids.glob("*.json")) == [] and not paths.supervisor_pid.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_up_and_down_from_the_command_line(tmp_path):
    """`kfloop up` detaches a supervisor and returns once every part is ready; `kfloop down` stops it all."""
    config = tmp_path / "system.yaml"
    config.write_text(yaml.safe_dump({"parts": [{"name": "svc", "command": SLEEP}]}))
    kfloop = [sys.executable, "-m", "kfloop"]
    state = ["--config", str(config), "--state-dir", str(tmp_path / "state")]
    up = subprocess.run([*kfloop, "up", *state], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "svc: ready" in up.stdout and "kfloop up: the local system is up" in up.stdout
    paths = SystemPaths(tmp_path / "state")
    supervisor, part = pids.read_record(paths.supervisor_pid), pids.read_record(paths.pid("svc"))
    assert supervisor.running() and part.running()
    status = subprocess.run([*kfloop, "status", "--json", *state], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["parts"][0]["alive"] is True
    down = subprocess.run([*kfloop, "down", *state], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not supervisor.running() and not part.running() and pids.group_members(part.pid) == []
    again = subprocess.run([*kfloop, "status", *state], capture_output=True, text=True, timeout=60)
    assert again.returncode == 3 and "supervisor: not running" in again.stdout
