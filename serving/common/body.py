"""Read a request body within a size limit, before and after gzip, whatever the client claims."""

from __future__ import annotations

import zlib
from typing import Any

import pydantic_core
from starlette.requests import ClientDisconnect, Request

from kfloop.errors import MalformedRequest, PayloadTooLarge

_GZIP = {"gzip", "x-gzip"}
_IDENTITY = {"", "identity"}


def _too_large(limit: int, what: str) -> PayloadTooLarge:
    reason = f"larger than {limit} bytes"
    return PayloadTooLarge(f"{what} is {reason}", details=[{"field": "(body)", "reason": reason, "limit_bytes": limit}])


def _check_content_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise MalformedRequest(f"Content-Length {declared!r} is not a number") from None
    if size > limit:
        raise _too_large(limit, "request body")


class _BoundedGunzip:
    """Decompress gzip incrementally, refusing to produce more than `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._out: list[bytes] = []
        self._size = 0
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        try:
            while data and not self._inflate.eof:
                chunk = self._inflate.decompress(data, self._limit - self._size + 1)
                self._size += len(chunk)
                if self._size > self._limit:
                    raise _too_large(self._limit, "decompressed request body")
                self._out.append(chunk)
                data = self._inflate.unconsumed_tail
        except zlib.error as exc:
            raise MalformedRequest(f"body is not valid gzip: {exc}") from None

    def finish(self) -> bytes:
        if not self._inflate.eof:
            raise MalformedRequest("gzip body is truncated")
        if self._inflate.unused_data:
            raise MalformedRequest("unexpected data after the end of the gzip stream")
        return b"".join(self._out)


async def read_body(request: Request, limit: int) -> bytes:
    """The (decompressed) body; 413 beyond `limit` bytes, checked on the header and on the bytes read."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in _GZIP and encoding not in _IDENTITY:
        raise MalformedRequest(f"Content-Encoding {encoding!r} is not supported; send identity or gzip")
    _check_content_length(request, limit)
    gunzip = _BoundedGunzip(limit) if encoding in _GZIP else None
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit, "request body")
            if gunzip is not None:
                gunzip.feed(chunk)
            else:
                chunks.append(chunk)
    except ClientDisconnect:
        raise MalformedRequest("the client disconnected before sending the whole body") from None
    return gunzip.finish() if gunzip is not None else b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """The JSON value of a body; 400 naming the problem (not UTF-8, syntax, NaN, nesting too deep)."""
    if not body.strip():
        raise MalformedRequest("the body is empty; send JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        return pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
