"""Who may send serving-origin events: a request bearing the serving token.

The predictor ships the impressions of the slates it served with `source: "serving"`, and readers of the log
prefer such a record to any other copy of its event id. So a client must not be able to claim it: a request
holding any event with that source is refused unless it presents the collector's serving token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from kfloop.errors import Forbidden, Unauthorized
from kfloop.events.schema import SERVING

BEARER = "bearer "


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if that is what it holds."""
    if authorization is None or not authorization.lower().startswith(BEARER):
        return None
    return authorization[len(BEARER) :].strip() or None


class ServingOrigin:
    """Checks a request's claim to serving-origin events against the configured token (None: no token)."""

    def __init__(self, token: bytes | None) -> None:
        self._token = token

    def check(self, items: list[Any], authorization: str | None) -> None:
        """Pass if no event claims `source: "serving"`, or the request bears the token; else 401 (no or a wrong
        token) or 403 (this collector has no token: it takes no serving-origin events at all)."""
        claims = [i for i, item in enumerate(items) if isinstance(item, Mapping) and item.get("source") == SERVING]
        if not claims:
            return
        reason = 'only the serving side may send "serving"'
        details = [{"index": i, "field": "source", "reason": reason} for i in claims]
        if self._token is None:
            raise Forbidden(
                'events with source "serving" are refused: this collector has no serving token configured '
                "(serving_token_file)",
                details=details,
            )
        presented = bearer_token(authorization)
        if presented is None:
            raise Unauthorized(
                'events with source "serving" need the serving token (Authorization: Bearer ...); '
                'a client sends source "client", or none',
                details=details,
            )
        if not hmac.compare_digest(presented.encode(), self._token):
            raise Unauthorized("the bearer token is not this collector's serving token", details=details)
