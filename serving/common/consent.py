"""Consent on a ranking request: the same flags an event carries (`kfloop.events.schema.Consent`).

V1: an instance field, `"consent": {"personalization": bool, "analytics": bool}`. V2 (Open Inference Protocol):
the request parameter `consent`, a JSON string of that object (KServe's V2 parameters, REST and gRPC alike, carry
only strings, numbers and booleans). A request without it gets the serving config's default (`ConsentDefault`).
Without personalization consent the transformer reads none of the user's features (cold-start defaults), and
the predictor still explores and records the decision (saying so) but logs no impressions for training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError

from kfloop.config import StrictModel
from kfloop.errors import MalformedRequest, field_errors
from kfloop.events.schema import Consent

CONSENT = "consent"


class ConsentDefault(StrictModel):
    """The consent assumed for a ranking request that carries none.

    Personalization defaults to true for backwards compatibility: clients written before requests carried
    consent send none, and were served with their users' features. A deployment whose clients send consent
    with every request can set it false (privacy by default)."""

    personalization: bool = True
    """Read the user's features and log the slate's impressions for training, unless the request says no."""
    analytics: bool = Field(default=False)
    """The analytics flag the logged impressions carry, unless the request says."""

    def consent(self) -> Consent:
        return Consent(personalization=self.personalization, analytics=self.analytics)


def consent_or_default(consent: Consent | None, default: ConsentDefault) -> Consent:
    """The request's consent, else the configured default."""
    return consent if consent is not None else default.consent()


def v2_consent(raw: Any) -> Consent | None:
    """The `consent` parameter of a V2 request (a JSON string of the consent object), None if absent; a 400
    naming the field (`parameters.consent...`) if it is malformed."""
    where = f"parameters.{CONSENT}"
    if raw is None:
        return None
    if isinstance(raw, Mapping):  # not possible through KServe's V2 REST model, but said plainly if it comes
        value: Any = raw
    elif isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            raise MalformedRequest(
                f'{where}: must be a JSON string of {{"personalization": bool, "analytics": bool}}'
            ) from None
    else:
        raise MalformedRequest(f'{where}: must be a JSON string of {{"personalization": bool, "analytics": bool}}')
    if not isinstance(value, Mapping):
        raise MalformedRequest(f"{where}: must be a JSON object, got {type(value).__name__}")
    try:
        return Consent.model_validate(value)
    except ValidationError as exc:
        raise malformed_fields(exc, where) from None


def malformed_fields(exc: ValidationError, where: str) -> MalformedRequest:
    """A 400 naming each bad field of a request part, under its place in the request (`instances[0]...`)."""
    problems = [{"field": f"{where}.{e['field']}", "reason": e["reason"]} for e in field_errors(exc)]
    return MalformedRequest("; ".join(f"{p['field']}: {p['reason']}" for p in problems), details=problems)


def v2_parameter(consent: Consent | None) -> dict[str, str]:
    """The V2 request parameters that carry a consent (none when it is None)."""
    return {} if consent is None else {CONSENT: consent.model_dump_json()}
