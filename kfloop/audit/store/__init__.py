"""Append-only, hash-chained audit stores: SQLite (default) and PostgreSQL."""

from __future__ import annotations

from kfloop.audit.config import AuditStoreConfig
from kfloop.audit.store.base import ACCEPTED, ACKNOWLEDGED, CONFLICT, DUPLICATE, Appended, RowQuery, SqlStore

AuditStore = SqlStore


def open_store(config: AuditStoreConfig) -> SqlStore:
    """A store for this config, opened (tables and triggers created when missing)."""
    store = make_store(config)
    store.open()
    return store


def make_store(config: AuditStoreConfig) -> SqlStore:
    """A store for this config, not yet opened."""
    if config.is_sqlite:
        from kfloop.audit.store.sqlite import SqliteStore

        return SqliteStore(config.sqlite_path, busy_timeout_s=config.busy_timeout_s)
    from kfloop.audit.store.postgres import PostgresStore

    return PostgresStore(config.url, password_file=config.password_file, connect_timeout_s=config.connect_timeout_s)


__all__ = [
    "ACCEPTED",
    "ACKNOWLEDGED",
    "CONFLICT",
    "DUPLICATE",
    "Appended",
    "AuditStore",
    "RowQuery",
    "SqlStore",
    "make_store",
    "open_store",
]
