"""Keep-alive HTTP/1.1 POSTs of JSON, one connection per thread: the request written in one send, the answer read
by the standard library's parser (http.client.HTTPResponse).

One send per request: http.client's HTTPConnection sends the head and the body separately, and the server's
event loop then wakes twice for one request; on two shared cores that is the stack's CPU. A connection idle
longer than `idle_timeout_s` is closed before it is used again: a request sent just as the server closes an
idle connection (uvicorn's keep-alive timeout, 5 s) meets a reset that cannot be told from a server that read
the request and failed, so it could not be retried safely. Closing ours first avoids it.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


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
    """POSTs to one `http://host:port`; each thread keeps its own connection."""

    def __init__(self, base_url: str, *, timeout_s: float, idle_timeout_s: float = 2.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{base_url}: only http://host:port is supported")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout_s, self.idle_timeout_s = timeout_s, idle_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    def post_json(self, path: str, body: bytes) -> Answer:
        """POST `body` to `path`; raises HttpError when no answer came (the socket timeout is per wait)."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        where = f"{self.host}:{self.port}{path}"
        sock = None
        try:
            sock = self._socket()
            sock.sendall(head + body)
            response = http.client.HTTPResponse(sock, method="POST")
            response.begin()
            data = response.read()
        except TimeoutError:
            self._drop(sock)
            raise HttpError("timeout", f"no answer from {where} in {self.timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop(sock)  # its state is unknown: the next request connects afresh
            raise HttpError("connection", f"{where}: {exc!r}") from None
        if response.will_close:
            self._drop(sock)
        else:
            self._local.used_at = time.monotonic()
        return Answer(response.status, data)

    def _socket(self) -> socket.socket:
        sock = getattr(self._local, "sock", None)
        if sock is not None and time.monotonic() - self._local.used_at > self.idle_timeout_s:
            self._drop(sock)
            sock = None
        if sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.sock = sock
            with self._lock:
                self._sockets.add(sock)
        return sock

    def _drop(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        sock.close()
        if getattr(self._local, "sock", None) is sock:
            self._local.sock = None
        with self._lock:
            self._sockets.discard(sock)

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
