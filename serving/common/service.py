"""How every small FastAPI service here (collector, audit sink, router) reports its version and is run."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from serving.common.heap import freeze_loaded_heap


def service_version() -> str:
    """The installed kfloop version (OpenAPI's `info.version`)."""
    try:
        return version("kfloop")
    except PackageNotFoundError:
        return "0+unknown"


def serve_app(app: Any, host: str, port: int) -> None:
    """Run under uvicorn (uvloop, httptools) until SIGTERM/SIGINT; graceful: in-flight requests finish. No access
    log: per-request lines cost throughput, and /metrics has the request latency."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    freeze_loaded_heap()
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=20,
    )
