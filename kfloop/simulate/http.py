"""Keep-alive HTTP/1.1 POSTs of JSON with the standard library's http.client, one connection per thread.

A connection idle longer than `idle_timeout_s` is closed before it is used again: a request sent just as the
server closes an idle connection (uvicorn's keep-alive timeout, 5 s) meets a reset that cannot be told from a
server that read the request and failed, so it could not be retried safely. Closing ours first avoids it.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

_HEADERS = {"Content-Type": "application/json", "Connection": "keep-alive"}


class HttpError(Exception):
    """The request got no HTTP answer (refused, reset, timed out, or an unreadable answer)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class HttpClient:
    """POSTs to one `http://host:port`; each thread keeps its own connection (http.client's are not shared)."""

    def __init__(self, base_url: str, *, timeout_s: float, idle_timeout_s: float = 2.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{base_url}: only http://host:port is supported")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout_s, self.idle_timeout_s = timeout_s, idle_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []

    def post_json(self, path: str, body: bytes) -> Answer:
        """POST `body` to `path`; raises HttpError when no answer came."""
        connection = self._connection()
        try:
            connection.request("POST", path, body, _HEADERS)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError:
            connection.close()
            where = f"{self.host}:{self.port}{path}"
            raise HttpError("timeout", f"no answer from {where} in {self.timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()  # its state is unknown: the next request connects afresh
            raise HttpError("connection", f"{self.host}:{self.port}{path}: {exc!r}") from None
        if response.will_close:
            connection.close()
        self._local.used_at = time.monotonic()
        return Answer(response.status, data)

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            self._local.connection, self._local.used_at = connection, time.monotonic()
            with self._lock:
                self._connections.append(connection)
        elif time.monotonic() - self._local.used_at > self.idle_timeout_s:
            connection.close()  # reconnects on the next request
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
