"""Real servers for integration tests: started on 127.0.0.1 with a free port and a tmp directory, stopped
after. Each `start_*` returns a `RunningServer`; use it as a context manager or call `stop()`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kfloop.processes import free_port, stop_process

HOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """The server's binary is not installed (run `make apt`)."""


@dataclass
class RunningServer:
    name: str
    port: int
    workdir: Path
    process: subprocess.Popen
    log_path: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _binary(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if Path(p).exists()), None)
    if path is None:
        raise ServerUnavailable(f"{name} is not installed; run `make apt` (Debian package {name})")
    return path


def _redis_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")
    return False


def start_redis(workdir: Path, *, attempts: int = 3, timeout_s: float = 10.0) -> RunningServer:
    """A throwaway redis-server: no persistence, loopback only, its log in workdir/redis.log."""
    binary = _binary("redis-server")
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):
        port = free_port()
        log_path = workdir / f"redis-{port}.log"
        command = [binary, "--bind", HOST, "--port", str(port), "--dir", str(workdir), "--save", ""]
        command += ["--appendonly", "no", "--daemonize", "no", "--logfile", str(log_path)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        server = RunningServer("redis", port, workdir, process, log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            if _redis_answers(port):
                return server
            time.sleep(0.02)
        server.stop()  # port taken meanwhile, or it failed to start: try another port
    log = log_path.read_text() if log_path.exists() else "(no log)"
    raise RuntimeError(f"redis-server did not start after {attempts} attempts; last log:\n{log}")
