"""Configuration of the feedback collector, loaded once by its entry point."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from kfloop.config import StrictModel
from kfloop.errors import ConfigError
from kfloop.eventlog import EventLogConfig
from kfloop.events import EventType
from serving.collector.fields import FIELDS_OF

MappableField = Literal[
    "item_id",
    "position",
    "request_id",
    "rating",
    "thumb",
    "dwell_ms",
    "scroll_depth",
    "value",
    "question_id",
    "answer",
    "model_version",
    "variant",
    "policy",
    "propensity",
]

_WRITER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MIN_KEY_CHARS = 16


def _hostname() -> str:
    return socket.gethostname()


def _check_key_length(key: str) -> str:
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"the pseudonymization key must be at least {MIN_KEY_CHARS} characters")
    return key


class FieldSources(StrictModel):
    """Which Segment `properties` key holds each kfloop field; the first key present wins."""

    item_id: list[str] = ["product_id", "item_id"]
    """The item (Segment's e-commerce spec calls it product_id)."""
    position: list[str] = ["position"]
    """1-based slot in the list the item was shown in."""
    request_id: list[str] = ["request_id"]
    """The ranking decision the event is about (as returned by the predictor)."""
    rating: list[str] = ["rating"]
    """Stars, 1 to 5."""
    thumb: list[str] = ["thumb"]
    """"up" or "down"."""
    dwell_ms: list[str] = ["dwell_ms"]
    """Milliseconds spent on the item."""
    scroll_depth: list[str] = ["scroll_depth"]
    """Fraction of the page seen, 0 to 1."""
    value: list[str] = ["value", "revenue"]
    """Business value of a conversion."""
    question_id: list[str] = ["question_id"]
    """Survey question id."""
    answer: list[str] = ["answer"]
    """Survey answer: an option id or a number."""
    model_version: list[str] = ["model_version"]
    """Model version that made the decision."""
    variant: list[str] = ["serving_variant"]
    """Traffic variant that served the decision (not `variant`: that is the product variant in Segment's spec)."""
    policy: list[str] = ["policy"]
    """Logging policy of an impression."""
    propensity: list[str] = ["propensity"]
    """Probability that the policy showed the item at this position."""


class EventMapping(StrictModel):
    """How one Segment track event (or page/screen name) becomes a kfloop event."""

    type: EventType
    """The kfloop event type it becomes."""
    properties: dict[MappableField, list[str]] = {}
    """Overrides of `field_sources` for this event only: kfloop field -> property keys to try in order."""
    constants: dict[MappableField, str | int | float] = {}
    """Fields with a fixed value for this event (e.g. thumb: up for "Product Liked")."""

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> Self:
        allowed = FIELDS_OF[self.type]
        wrong = sorted(set(self.properties) - allowed | set(self.constants) - allowed)
        if wrong:
            raise ValueError(f"a {self.type.value} event has no field(s) {', '.join(wrong)}")
        return self


class ConsentCategories(StrictModel):
    """Segment Consent Management categories (`context.consent.categoryPreferences`) behind each flag."""

    personalization: list[str] = ["Personalization"]
    """Categories any of which, when true, means the user agreed to personalization (training)."""
    analytics: list[str] = ["Analytics"]
    """Categories any of which, when true, means the user agreed to aggregate analytics."""


class SegmentConfig(StrictModel):
    """Segment HTTP Tracking API compatibility: write keys, pseudonymization, consent and mapping."""

    write_keys: list[SecretStr] = []
    """Accepted write keys (HTTP basic auth username, or `writeKey` in the body). Local development only:
    a deployment mounts a Secret and sets write_keys_file, which replaces this list."""
    write_keys_file: Path | None = None
    """A file of write keys, one a line (blank lines and # comments ignored), e.g. a mounted Secret. When set,
    it replaces `write_keys`, so a ConfigMap shared with the local stack never carries live dev keys."""
    pseudonymization_key: SecretStr | None = None
    """HMAC-SHA256 key turning Segment's userId/anonymousId into the stored pseudonymous user_id (local
    development; replaced by pseudonymization_key_file when that is set)."""
    pseudonymization_key_file: Path | None = None
    """A file holding the pseudonymization key (e.g. a mounted Secret); replaces `pseudonymization_key`."""
    default_consent: bool = False
    """Consent assumed when a message carries no consent preferences at all (privacy by default: False)."""
    consent_categories: ConsentCategories = Field(default_factory=ConsentCategories)
    """Which consent categories grant which kfloop consent flag."""
    field_sources: FieldSources = Field(default_factory=FieldSources)
    """Default property keys of each kfloop field, for every mapping."""
    track: dict[str, EventMapping] = {}
    """Track event name -> kfloop event. Unmapped track events are counted, not stored."""
    pages: dict[str, EventMapping] = {}
    """Page or screen name -> kfloop event. Unmapped pages and screens are counted, not stored."""

    @model_validator(mode="after")
    def _pseudonymizer_comes_with_write_keys(self) -> Self:
        has_keys = bool(self.write_keys) or self.write_keys_file is not None
        has_pseudonymizer = self.pseudonymization_key is not None or self.pseudonymization_key_file is not None
        if has_keys and not has_pseudonymizer:
            raise ValueError("write keys are set, so pseudonymization_key (or its _file) is required")
        if self.pseudonymization_key is not None:
            _check_key_length(self.pseudonymization_key.get_secret_value())
        return self

    def load_write_keys(self) -> list[str]:
        """Every accepted write key: from write_keys_file when set, else the inline (dev) list."""
        if self.write_keys_file is None:
            return [k.get_secret_value() for k in self.write_keys if k.get_secret_value()]
        lines = _read_secret(self.write_keys_file).splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    def load_pseudonymization_key(self) -> bytes | None:
        """The HMAC key: from pseudonymization_key_file when set, else inline; None without Segment."""
        if self.pseudonymization_key_file is not None:
            key = _read_secret(self.pseudonymization_key_file).strip()
        elif self.pseudonymization_key is not None:
            key = self.pseudonymization_key.get_secret_value()
        else:
            return None
        try:
            return _check_key_length(key).encode()
        except ValueError as exc:
            raise ConfigError(f"{self.pseudonymization_key_file}: {exc}") from None


def _read_secret(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None


class CorsConfig(StrictModel):
    """Cross-origin access for browsers posting events directly."""

    allow_origins: list[str] = []
    """Origins allowed to call the collector from a browser ("*" for any); empty: no CORS headers."""


class CollectorConfig(StrictModel):
    """The feedback collector: an HTTP edge that makes events durable in the event log."""

    host: str = "127.0.0.1"
    """Address to bind (0.0.0.0 in a container)."""
    port: int = Field(default=8090, ge=1, le=65535)
    """Port to listen on."""
    event_log: EventLogConfig = Field(default_factory=EventLogConfig)
    """Where events are made durable and sealed."""
    writer_id: str = Field(default_factory=_hostname)
    """This replica's writer id in the log (default: the hostname, a StatefulSet pod's stable name)."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest request body accepted, before and after gzip (413 beyond)."""
    max_batch_events: int = Field(default=1000, ge=1)
    """Most events (or Segment messages) in one request (413 beyond)."""
    max_future_skew_s: float = Field(default=300.0, ge=0)
    """An event stamped further than this in the future is rejected (naming `ts`): a broken client clock."""
    cors: CorsConfig = Field(default_factory=CorsConfig)
    """CORS for browsers."""
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    """Segment HTTP Tracking API compatibility."""
    serving_token_file: Path | None = None
    """A file holding the serving token (e.g. a mounted Secret; surrounding whitespace ignored), which the
    predictors present (`Authorization: Bearer ...`) when they ship the impressions of the slates they served
    (events with `source: "serving"`). Only a request bearing it may send such events: a client cannot claim
    the served record. None: serving-origin events are refused (403)."""

    def load_serving_token(self) -> bytes | None:
        """The serving token, read once at start; None when none is configured."""
        if self.serving_token_file is None:
            return None
        token = _read_secret(self.serving_token_file).strip()
        if len(token) < MIN_KEY_CHARS:
            raise ConfigError(f"{self.serving_token_file}: a serving token has at least {MIN_KEY_CHARS} characters")
        return token.encode()

    @field_validator("writer_id")
    @classmethod
    def _writer_id_is_a_file_name(cls, value: str) -> str:
        if not _WRITER_ID.match(value):
            raise ValueError("must be letters, digits, '.', '_' or '-' (it names files in the log)")
        return value
