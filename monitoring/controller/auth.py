"""The bearer token every caller of the controller's API sends (Alertmanager, `kfloop pause | resume`).

It lives in a file (a mounted Secret on a cluster, which Kubernetes replaces in place when it is rotated), read
again whenever the file changes; the comparison takes the same time whatever the guess.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from pathlib import Path

from fastapi import HTTPException

from kfloop.errors import ConfigError, NotReady
from monitoring.controller.config import read_token

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kfloop-controller"'}


def ensure_token_file(path: Path, create: bool) -> None:
    """The token file exists and is not empty; with `create`, a missing one is made (random, mode 0600)."""
    if path.exists() and path.read_text().strip():
        return
    if not create:
        raise ConfigError(f"token_file {path} is missing or empty: put the webhook's bearer token there")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")


class BearerToken:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._token = b""

    def _current(self) -> bytes:
        try:
            stat = self.path.stat()
            with self._lock:
                if self._seen != (stat.st_mtime_ns, stat.st_size):
                    self._token = read_token(self.path).encode()
                    self._seen = (stat.st_mtime_ns, stat.st_size)
                token = self._token
        except OSError as exc:
            raise NotReady(f"the token file cannot be read: {exc}") from None
        if not token:
            raise NotReady(f"the token file {self.path} is empty")
        return token

    def check(self, authorization: str | None) -> None:
        """401 unless `authorization` is `Bearer <the token>`."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPException(401, "send the controller's token: Authorization: Bearer TOKEN", headers=CHALLENGE)
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self._current()):
            raise HTTPException(401, "the bearer token is not the controller's", headers=CHALLENGE)
