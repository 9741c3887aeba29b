"""Feedback event schema v1.

Every event names its type, and its `signal` (implicit or explicit) is fixed by that type in the
schema itself, so no consumer has to keep its own list. Unknown fields are rejected rather than
silently kept: that is how personal data (emails, Segment traits) stays out of the log.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
)

SCHEMA_VERSION = "1"
CLIENT, SERVING = "client", "serving"
"""An event's `source`: recorded by a client of the system, or by the serving side itself."""


class EventType(StrEnum):
    IMPRESSION = "impression"
    CLICK = "click"
    DWELL = "dwell"
    SCROLL = "scroll"
    CONVERSION = "conversion"
    RATING = "rating"
    THUMBS = "thumbs"
    SURVEY = "survey"


class Signal(StrEnum):
    IMPLICIT = "implicit"
    EXPLICIT = "explicit"


SIGNAL_OF: dict[EventType, Signal] = {
    EventType.IMPRESSION: Signal.IMPLICIT,
    EventType.CLICK: Signal.IMPLICIT,
    EventType.DWELL: Signal.IMPLICIT,
    EventType.SCROLL: Signal.IMPLICIT,
    EventType.CONVERSION: Signal.IMPLICIT,
    EventType.RATING: Signal.EXPLICIT,
    EventType.THUMBS: Signal.EXPLICIT,
    EventType.SURVEY: Signal.EXPLICIT,
}

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}")


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError("must be 1-128 characters of letters, digits and . _ : / -, starting with a letter or digit")
    return value


def _check_pseudonymous(value: str) -> str:
    if "@" in value:
        raise ValueError("looks like an email address; send a pseudonymous id, never personal data")
    return _check_id(value)


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an RFC 3339 timestamp, e.g. 2026-11-23T14:05:00.123Z") from None
    else:
        raise ValueError("must be an RFC 3339 timestamp string with a timezone")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must carry a timezone (Z or +hh:mm)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC, which datetime cannot hold
        raise ValueError("is outside the years 1 to 9999 once converted to UTC") from None


_ID_PATTERN = f"^{_ID_RE.pattern}$"
Identifier = Annotated[str, AfterValidator(_check_id), Field(json_schema_extra={"pattern": _ID_PATTERN})]
_EVENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,139}")


def _check_event_id(value: str) -> str:
    if not _EVENT_ID_RE.fullmatch(value):
        raise ValueError("must be 1-140 characters of letters, digits and . _ : / -, starting with a letter or digit")
    return value


EventId = Annotated[
    str, AfterValidator(_check_event_id), Field(json_schema_extra={"pattern": f"^{_EVENT_ID_RE.pattern}$"})
]
"""An event id: an identifier, up to 140 characters, so that a served impression's `imp-{request_id}-{position}`
fits whatever request id (up to 128 characters) the ranking had."""
PseudonymousId = Annotated[str, AfterValidator(_check_pseudonymous), Field(json_schema_extra={"pattern": _ID_PATTERN})]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_timestamp),
    Field(json_schema_extra={"format": "date-time"}),
]


class Consent(BaseModel):
    """What the user agreed to, as known when the event was sent."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)

    personalization: bool
    """The user agreed that their behaviour may train and personalize models. False: never kept."""
    analytics: bool = False
    """The user agreed to aggregate analytics (counted, never used for training on its own)."""


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    schema_version: Literal["1"] = SCHEMA_VERSION
    """Version of this schema; producers send "1"."""
    event_id: EventId
    """Idempotency key chosen by the producer: the same id sent twice is stored once. The predictor's own
    impressions are `imp-{request_id}-{position}`: a client's impression of the same slot is the same event."""
    request_id: Identifier | None = None
    """The ranking decision this feedback is about (as returned by the predictor)."""
    user_id: PseudonymousId
    """Pseudonymous user id. Never an email or other direct identifier."""
    ts: Timestamp
    """When it happened, RFC 3339 with a timezone; stored in UTC."""
    consent: Consent
    """The user's consent flags at the time of the event."""
    model_version: Identifier | None = None
    """Model version that made the decision, where known."""
    variant: Identifier | None = None
    """Traffic variant (e.g. stable, canary) that served the decision, where known."""
    source: Literal["client", "serving"] = CLIENT
    """Who recorded it: "client" (the default), or "serving" for the impressions the predictor logs itself
    from each slate it answers (with their exact propensities). The collector takes "serving" only with its
    serving token; where a client's copy of the same event id exists too, readers use the served one."""


class ImpressionEvent(_EventBase):
    """An item was shown in a slate position."""

    type: Literal["impression"]
    signal: Literal["implicit"] = "implicit"
    item_id: Identifier
    """The item shown."""
    position: int = Field(ge=1, le=100)
    """1-based slot in the slate."""
    policy: Identifier | None = None
    """Name of the policy that chose the item (the logging policy)."""
    propensity: float | None = Field(default=None, gt=0.0, le=1.0)
    """Probability that the policy put this item at this position; off-policy evaluation needs it."""


class ClickEvent(_EventBase):
    """The user clicked an item."""

    type: Literal["click"]
    signal: Literal["implicit"] = "implicit"
    item_id: Identifier
    """The item clicked."""
    position: int | None = Field(default=None, ge=1, le=100)
    """Slot the item was in, where known."""


class DwellEvent(_EventBase):
    """Time spent on an item after opening it."""

    type: Literal["dwell"]
    signal: Literal["implicit"] = "implicit"
    item_id: Identifier
    """The item dwelt on."""
    dwell_ms: int = Field(ge=0, le=86_400_000)
    """Milliseconds spent, 0 to one day."""


class ScrollEvent(_EventBase):
    """How far the user scrolled through an item's page."""

    type: Literal["scroll"]
    signal: Literal["implicit"] = "implicit"
    item_id: Identifier
    """The item whose page was scrolled."""
    scroll_depth: float = Field(ge=0.0, le=1.0)
    """Fraction of the page seen, 0 to 1."""


class ConversionEvent(_EventBase):
    """The user bought, subscribed to, or otherwise took up an item."""

    type: Literal["conversion"]
    signal: Literal["implicit"] = "implicit"
    item_id: Identifier
    """The item converted on."""
    value: float | None = Field(default=None, ge=0.0)
    """Monetary or business value, where known."""


class RatingEvent(_EventBase):
    """An explicit star rating."""

    type: Literal["rating"]
    signal: Literal["explicit"] = "explicit"
    item_id: Identifier
    """The item rated."""
    rating: int = Field(ge=1, le=5)
    """Stars, 1 to 5."""


class ThumbsEvent(_EventBase):
    """An explicit thumbs up or down."""

    type: Literal["thumbs"]
    signal: Literal["explicit"] = "explicit"
    item_id: Identifier
    """The item judged."""
    thumb: Literal["up", "down"]
    """Up or down."""


class SurveyEvent(_EventBase):
    """An answer to a survey question: a choice id or a number, never free text (it may hold personal data)."""

    type: Literal["survey"]
    signal: Literal["explicit"] = "explicit"
    item_id: Identifier | None = None
    """The item the question was about, if any."""
    question_id: Identifier
    """Which question."""
    answer: Identifier | float
    """The chosen option's id, or a numeric answer."""


Event = Annotated[
    ImpressionEvent | ClickEvent | DwellEvent | ScrollEvent | ConversionEvent | RatingEvent | ThumbsEvent | SurveyEvent,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


def parse_event(data: Any) -> Any:
    """Validate one event (a dict); raises pydantic.ValidationError naming each bad field."""
    return _ADAPTER.validate_python(data)


EVENT_TAGS = frozenset(t.value for t in EventType)


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema producers validate against (written to the repo by `make generate`)."""
    schema = _ADAPTER.json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kfloop.dev/schemas/event-v1.json",
        "title": "kfloop feedback event, schema v1",
        **schema,
    }
