"""What the router reads of a ranking request: its body (within the size limit, and its JSON part when the binary
tensor extension follows it with raw tensors), and the user, whose arm it is during an experiment.

Only looked up, never validated (the predictor does that and answers 400): a body where no user can be found
is routed by a per-request draw, as outside an experiment.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive, Scope

from kfloop.errors import MalformedRequest, PayloadTooLarge
from serving.common.protocol import USER_ID


def json_part(body: bytes, binary_header: str | None) -> bytes:
    """The JSON of a request body: all of it, or with the binary tensor extension (its
    Inference-Header-Content-Length, `binary_header`) the first that many bytes, the raw tensors after them."""
    if binary_header is None:
        return body
    try:
        length = int(binary_header)
    except ValueError:
        raise MalformedRequest("Inference-Header-Content-Length is not a number") from None
    if not 0 <= length <= len(body):
        raise MalformedRequest(f"Inference-Header-Content-Length ({length}) is not within the body ({len(body)} bytes)")
    return body[:length]


def request_user(body: dict[str, Any]) -> str | None:
    """The user id of a V1 body (its first instance's: a batch is one user's, or routed as the first one's) or
    of a V2 body (its `user_id` input tensor); None when there is none."""
    instances = body.get("instances")
    if isinstance(instances, list) and instances and isinstance(instances[0], dict):
        return _text(instances[0].get(USER_ID))
    for tensor in body.get("inputs") or []:
        if isinstance(tensor, dict) and tensor.get("name") == USER_ID:
            data = tensor.get("data")
            return _text(data[0]) if isinstance(data, list) and data else None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise MalformedRequest("Content-Length is not a number") from None
    return None


async def read_body(receive: Receive, declared: int | None, limit: int) -> bytes:
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequest("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedRequest("the body must be a JSON object")
    return value
