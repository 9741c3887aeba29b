"""One base exception for the project; each subclass carries the HTTP status it maps to at the edge."""

from __future__ import annotations

from typing import Any


class KfloopError(Exception):
    """Base of every error kfloop raises on purpose."""

    http_status: int = 500

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return error_body(type(self).__name__, self.message, self.details)


def error_body(error: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error body of every kfloop HTTP service: {"error": a machine code, "message": for a person,
    "details": an optional list of objects, e.g. [{"field": ..., "reason": ...}]}. A single object is listed."""
    body: dict[str, Any] = {"error": error, "message": message}
    if details is not None:
        body["details"] = details if isinstance(details, list) else [details]
    return body


class MalformedRequest(KfloopError):
    """The request could not be parsed at all (not JSON, wrong shape)."""

    http_status = 400


class Unauthorized(KfloopError):
    """Missing or unknown credentials (e.g. a Segment write key)."""

    http_status = 401


class Forbidden(KfloopError):
    """The caller may not do this, whatever credentials it presents."""

    http_status = 403


class NotFound(KfloopError):
    """The thing asked for does not exist."""

    http_status = 404


class Conflict(KfloopError):
    """A well-formed request the current state does not allow (e.g. one experiment at a time)."""

    http_status = 409


class PayloadTooLarge(KfloopError):
    """The request body or batch is larger than the configured limit."""

    http_status = 413


class InvalidInput(KfloopError):
    """Parsed, but a field failed validation; details name the field and the reason."""

    http_status = 422


class NotReady(KfloopError):
    """The service is up but cannot serve yet (still loading, or shutting down)."""

    http_status = 503


class DataIntegrityError(KfloopError):
    """Data on disk does not match what was expected (checksum, hash chain)."""

    http_status = 500


class ConfigError(KfloopError):
    """A configuration file is missing or invalid."""

    http_status = 500


_TAG_ERRORS = {"union_tag_invalid", "union_tag_not_found"}


def field_errors(exc: Any, *, union_tags: frozenset[str] = frozenset()) -> list[dict[str, str]]:
    """Turn a pydantic ValidationError into [{field, reason}] a producer can act on.

    `union_tags` are the discriminator values of a tagged union: pydantic puts the tag first in each
    error's location, which is noise to a producer who only sent the event's own fields.
    """
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in union_tags:
            loc = loc[1:]
        if err.get("type") in _TAG_ERRORS:
            loc = [*loc, err.get("ctx", {}).get("discriminator", "type").strip("'")]
        out.append({"field": ".".join(loc) or "(body)", "reason": err.get("msg", "invalid")})
    return out
