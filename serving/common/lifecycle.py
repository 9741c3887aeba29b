"""Open a service's durable resource (event log, audit store) off the event loop; readiness follows it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar

from fastapi import FastAPI

from kfloop.errors import NotReady

log = logging.getLogger(__name__)


class Durable(Protocol):
    ready: bool

    def open(self) -> Any: ...

    def close(self) -> None: ...


R = TypeVar("R", bound=Durable)


class ResourceLifecycle(Generic[R]):
    """Opens `resource` in a thread when the app starts (recovery may take a while, and /healthz must answer
    meanwhile), closes it on shutdown; `require_ready` turns "not yet" and "failed" into 503s."""

    def __init__(self, resource: R, *, name: str, closed_message: str | None = None) -> None:
        self.resource = resource
        self.name = name
        self.closed_message = closed_message or f"{name} closed"
        self.failure: str | None = None

    def open(self) -> None:
        try:
            self.resource.open()
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("opening the %s failed; the service stays not ready", self.name)
        else:
            log.info("%s open", self.name)

    def close(self) -> None:
        if self.resource.ready:
            self.resource.close()
            log.info(self.closed_message)

    def require_ready(self) -> None:
        if self.failure is not None:
            raise NotReady(f"the {self.name} failed to open: {self.failure}")
        if not self.resource.ready:
            raise NotReady(f"the {self.name} is still opening; retry shortly")

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        opening = asyncio.create_task(asyncio.to_thread(self.open))
        try:
            yield
        finally:
            await opening
            await asyncio.to_thread(self.close)
