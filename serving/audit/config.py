"""Configuration of the audit sink, loaded once by its entry point."""

from __future__ import annotations

from pydantic import Field

from kfloop.audit.config import AuditStoreConfig
from kfloop.config import StrictModel


class AuditSinkConfig(StrictModel):
    """The audit sink: an HTTP edge in front of the append-only audit store."""

    host: str = "127.0.0.1"
    """Address to bind (0.0.0.0 in a container)."""
    port: int = Field(default=8095, ge=1, le=65535)
    """Port to listen on."""
    store: AuditStoreConfig = Field(default_factory=AuditStoreConfig)
    """Where records are chained and kept."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body accepted, before and after gzip (413 beyond)."""
    max_batch_records: int = Field(default=2000, ge=1)
    """Most records in one POST /v1/decisions (413 beyond)."""
    max_page_records: int = Field(default=1000, ge=1)
    """Most records one GET /v1/decisions returns (page on with after_seq)."""
