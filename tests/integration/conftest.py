"""Fixtures that start real servers (see servers.py); each is stopped when its test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.servers import RunningServer, start_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A fresh redis-server on 127.0.0.1 (free port), empty, no persistence."""
    with start_redis(tmp_path / "redis") as server:
        yield server
