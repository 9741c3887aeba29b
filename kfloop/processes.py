"""Child processes on loopback, for both environments (standard library only): a free port to give a server,
and a clean stop (SIGTERM, then SIGKILL) of one. Used by the serving stack, benchmarks and test fixtures."""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it; the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen, timeout_s: float) -> int:
    """SIGTERM (a clean shutdown), then SIGKILL if it does not exit in time; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
