"""Fixtures the controller's unit tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kfloop.audit.store.sqlite import SqliteStore


@pytest.fixture
def audit_store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "audit.db") as store:
        yield store


@pytest.fixture
def versions(tmp_path: Path) -> list[str]:
    """Two blessed versions: the newer is stable (the latest deployable seeds the state), the older a candidate.
    (Modules with versions of their own define this fixture themselves.)"""
    from kfloop.registry import ModelRegistry
    from tests.support.controller import register

    registry = ModelRegistry(tmp_path / "registry")
    return [register(registry, tmp_path / "models", n) for n in range(2)]
