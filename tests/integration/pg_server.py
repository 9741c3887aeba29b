"""Start and stop a throwaway PostgreSQL 15 server on a loopback port (Debian's binaries).

PostgreSQL refuses to run as root, so under root (CI) initdb and pg_ctl run as the `postgres` user via
runuser, in a temporary directory that user owns. The server trusts loopback connections: tests only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kfloop.processes import free_port

PG_BIN = Path(os.environ.get("KFLOOP_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    data_dir: Path

    def url(self, database: str = "postgres", user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@{self.host}:{self.port}/{database}"


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the postgres OS user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str]) -> None:
    result = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running server (superuser `postgres`, trust auth on 127.0.0.1); stopped and deleted on exit."""
    if not (PG_BIN / "postgres").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN}; run `make apt` (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="kfloop-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    data, sockets, logfile = root / "data", root / "sockets", root / "server.log"
    port = free_port()
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
        _run(["mkdir", str(sockets)])  # owned by the server's user
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-o", options, "-w", "-t", "60", "start"])
        try:
            yield PostgresServer("127.0.0.1", port, SUPERUSER, data)
        finally:
            _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
