"""The joiner's service: /metrics (the counts per model version and variant), /healthz, /readyz; and its
entry point, `kfloop joiner` or `python -m serving.joiner`.

The state is rebuilt from the log in the background when the app starts: /healthz answers at once, /readyz
once the replay is done. /healthz fails if following the log stopped, so a supervisor restarts the process.
"""

from __future__ import annotations

import argparse
import sys

from fastapi import APIRouter, FastAPI
from starlette.responses import PlainTextResponse, Response

from kfloop.config import load_config
from kfloop.errors import ConfigError, NotReady
from serving.common.http import install_error_handlers
from serving.common.lifecycle import ResourceLifecycle
from serving.common.metrics import metrics_response
from serving.common.openapi import ERROR_BODY
from serving.common.service import serve_app, service_version
from serving.joiner import flags
from serving.joiner.config import JoinerConfig
from serving.joiner.follow import LogJoiner
from serving.joiner.metrics import joiner_registry


def create_app(config: JoinerConfig, joiner: LogJoiner | None = None) -> FastAPI:
    """A joiner app for this config; the log is replayed and followed only once the app's lifespan starts."""
    joiner = joiner or LogJoiner(config)
    lifecycle = ResourceLifecycle(joiner, name="joiner (event-log replay)", closed_message="joiner stopped")
    registry = joiner_registry(joiner.snapshot)
    app = FastAPI(
        title="kfloop joiner",
        version=service_version(),
        description="Feedback joined to served impressions by request id; counts per model version and variant.",
        lifespan=lifecycle.lifespan,
    )
    install_error_handlers(app)
    router = APIRouter(tags=["operations"])

    def require_following() -> None:
        if joiner.failure is not None:
            raise NotReady(f"the joiner stopped following the event log: {joiner.failure}")

    stopped = {
        503: {
            "description": "Following the event log stopped (or, for /readyz, the replay is not done)",
            "content": {"application/json": {"schema": ERROR_BODY}},
        }
    }

    @router.get("/healthz", summary="The process is up and following the log", responses=stopped)
    async def healthz() -> dict[str, str]:
        require_following()
        return {"status": "ok"}

    @router.get("/readyz", summary="The state is rebuilt from the log and followed", responses=stopped)
    async def readyz() -> dict[str, str]:
        require_following()
        lifecycle.require_ready()
        return {"status": "ready"}

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus_metrics() -> Response:  # in a worker thread: it may wait for a slice of the replay
        return metrics_response(registry)

    app.include_router(router)
    return app


def run(config: JoinerConfig) -> int:
    """Serve until SIGTERM/SIGINT."""
    serve_app(create_app(config), config.host, config.port)
    return 0


def command(args: argparse.Namespace) -> int:
    """`kfloop joiner`: the config file, then the flags; a config problem is one line on stderr, exit 2."""
    try:
        config = load_config(JoinerConfig, args.config, flags.overrides(args))
    except ConfigError as exc:
        print(f"joiner: {exc.message}", file=sys.stderr)
        return 2
    return run(config)


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.joiner`: the same flags as `kfloop joiner`."""
    parser = argparse.ArgumentParser(prog="python -m serving.joiner", description="Run the joiner.")
    flags.add_arguments(parser)
    return command(parser.parse_args(argv))
