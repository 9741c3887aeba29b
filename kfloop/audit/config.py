"""Configuration of the audit store, the predictor-side spool and background explanation sampling."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from kfloop.config import StrictModel

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
STORE_URL_ENV = "KFLOOP_AUDIT_STORE_URL"
"""The environment variable that gives the audit store's URL to the sink and to `kfloop audit`: where a URL
with a password belongs (a command line is readable by every user of the machine, in ps and /proc)."""


def store_url_given(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """The store URL a command was given: its --store-url, else $KFLOOP_AUDIT_STORE_URL, else None (the
    config's). Read at the entry point, never at import."""
    return flag or environ.get(STORE_URL_ENV) or None


def redacted(url: str) -> str:
    """The URL with its password, if any, replaced by ***: for files and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


class AuditStoreConfig(StrictModel):
    """Where the append-only, hash-chained audit records live."""

    url: str = f"{SQLITE_PREFIX}.kfloop/audit/audit.db"
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or
    `postgresql://user@host:port/database` (PostgreSQL needs the pg8000 driver)."""
    password_file: Path | None = None
    """PostgreSQL: a file holding the password (e.g. a mounted Secret), instead of one in the URL."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    """PostgreSQL: how long to wait for a connection."""
    busy_timeout_s: float = Field(default=30.0, gt=0)
    """SQLite: how long an append waits for another writer's lock."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value.startswith(SQLITE_PREFIX):
            if not value[len(SQLITE_PREFIX) :]:
                raise ValueError("sqlite URL has no path: sqlite:///path/to/audit.db")
            return value
        parts = urlsplit(value)
        if parts.scheme in POSTGRES_SCHEMES:
            if not parts.hostname or not parts.path.strip("/"):
                raise ValueError("postgresql URL needs a host and a database: postgresql://user@host:5432/db")
            return value
        raise ValueError("must start with sqlite:/// or postgresql://")

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith(SQLITE_PREFIX)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url[len(SQLITE_PREFIX) :])


class SpoolConfig(StrictModel):
    """The predictor's durable local spool of audit records and the shipper that empties it into the sink."""

    dir: Path = Path(".kfloop/audit/spool")
    """Local directory (a persistent volume on a cluster); one process owns it at a time."""
    sink_url: str = "http://127.0.0.1:8095"
    """Base URL of the audit sink (records go to {sink_url}/v1/decisions)."""
    batch_max_records: int = Field(default=500, ge=1, le=10_000)
    """Most records per POST to the sink."""
    segment_max_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)
    """Start a new spool file past this size; shipped files are deleted."""
    idle_wait_s: float = Field(default=0.5, gt=0)
    """How long the shipper sleeps when there is nothing to send (an append wakes it sooner)."""
    retry_initial_s: float = Field(default=0.2, gt=0)
    """First wait after a failed delivery; doubles per failure."""
    retry_max_s: float = Field(default=30.0, gt=0)
    """Longest wait between delivery attempts."""
    request_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of one POST to the sink."""


class ExplanationSamplingConfig(StrictModel):
    """Which decisions get an explanation computed in the background, as they are made."""

    rate: float = Field(default=0.01, ge=0.0, le=1.0)
    """Fraction of decisions explained (chosen by a hash of the request id, so reproducible)."""
    queue_size: int = Field(default=1000, ge=1)
    """Decisions waiting for the explainer; beyond this, samples are skipped and counted, never blocking."""
    retry_for_s: float = Field(default=300.0, ge=0.0)
    """How long a sampled decision is retried while the explainer is unavailable (loading, restarting,
    unreachable) before it is counted as failed; the explainer loads for a minute after the predictor is up."""
