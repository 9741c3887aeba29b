"""A small keep-alive HTTP/1.1 client for the hops inside the stack (transformer -> router -> predictor).

General-purpose async clients cost ~1 ms of CPU per request here; on a 2-core machine serving 200 requests/s
through three hops, that is most of a core. This one does only what the hops need: POST or GET a body on
pooled connections to one host, Content-Length or chunked answers, a timeout, and one retry on a fresh
connection when a pooled one turns out to be closed before any answer arrived (a peer's idle timeout).

A pooled connection idle for `idle_timeout_s` is not reused: a request sent just as the server closes an idle
connection (uvicorn's keep-alive timeout, 5 s) meets a reset, which cannot be told from a server that read the
request and failed, so it could not be retried safely. Closing ours first leaves no such race.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


class UpstreamUnavailable(Exception):
    """No answer: could not connect, the connection broke, or the timeout passed."""


class UpstreamRefused(UpstreamUnavailable):
    """Could not connect: nothing was sent, so the request may go to another replica."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    inference_header_length: str | None = None
    """The Open Inference Protocol's Inference-Header-Content-Length of a binary answer (None: all JSON)."""


class _Stale(Exception):
    """A pooled connection was closed by the peer before answering: safe to retry on a new one."""


class HttpPool:
    """Connections to one base URL (http://host:port)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        max_idle: int = 64,
        idle_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host:port URLs are supported, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        self.idle_timeout_s = idle_timeout_s  # below the peers' keep-alive timeout
        self.clock = clock
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []  # newest last

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        head = self._head(method, path, body, headers or {})
        try:
            return await asyncio.wait_for(self._exchange(head, body), timeout_s or self.timeout_s)
        except TimeoutError:
            raise UpstreamUnavailable(
                f"{self.base_url}{path}: no answer within {timeout_s or self.timeout_s}s"
            ) from None

    async def _exchange(self, head: bytes, body: bytes) -> Answer:
        while self._idle:
            reader, writer, idle_since = self._idle.pop()
            if self.clock() - idle_since > self.idle_timeout_s:
                writer.close()
                self._close_idle()  # the rest of the pool is older still
                break
            try:
                return await self._send((reader, writer), head, body)
            except _Stale:
                continue
        try:
            connection = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise UpstreamRefused(f"{self.base_url}: cannot connect ({exc})") from None
        try:
            return await self._send(connection, head, body)
        except _Stale:
            raise UpstreamUnavailable(f"{self.base_url}: the connection closed without an answer") from None

    async def _send(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], head: bytes, body: bytes
    ) -> Answer:
        reader, writer = connection
        try:
            writer.write(head + body)
            status_line = await reader.readline()
            if not status_line:
                writer.close()
                raise _Stale()
            answer, keep = await _read_answer(status_line, reader)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            writer.close()
            raise UpstreamUnavailable(f"{self.base_url}: the connection broke ({type(exc).__name__})") from None
        except asyncio.CancelledError:
            writer.close()  # a timeout mid-answer: the connection is in an unknown state
            raise
        if keep and len(self._idle) < self.max_idle:
            self._idle.append((reader, writer, self.clock()))
        else:
            writer.close()
        return answer

    def _head(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _close_idle(self) -> None:
        while self._idle:
            _, writer, _ = self._idle.pop()
            writer.close()

    async def close(self) -> None:
        self._close_idle()


async def _read_answer(status_line: bytes, reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x status line")
    status = int(parts[1])
    length, chunked, keep, content_type = None, False, parts[0] == b"HTTP/1.1", "application/json"
    binary_header = None
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection":
            keep = value.lower() != "close" and (keep or value.lower() == "keep-alive")
        elif name == "content-type":
            content_type = value
        elif name == "inference-header-content-length":
            binary_header = value
    if chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body, keep = await reader.read(), False
    return Answer(status, body, content_type, binary_header), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
