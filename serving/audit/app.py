"""The audit sink: FastAPI app factory and its entry point.

Records are validated one by one; the valid ones of a request are chained and committed in one
transaction before the response, so an acknowledged record is durable. The store is opened in the
background: /healthz answers at once, /readyz once the store is open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from kfloop.audit.canonical import parse_rfc3339, rfc3339
from kfloop.audit.chain import StoredRow
from kfloop.audit.config import store_url_given
from kfloop.audit.contexts import referenced_contexts
from kfloop.audit.record import RECORD_TAGS, parse_record, utc_now
from kfloop.audit.store import RowQuery, SqlStore, make_store
from kfloop.config import load_config
from kfloop.errors import InvalidInput, MalformedRequest, NotFound, PayloadTooLarge, field_errors
from serving.audit import cloudevents, flags, openapi
from serving.audit.config import AuditSinkConfig
from serving.audit.metrics import AuditSinkMetrics
from serving.common.body import parse_json, read_body
from serving.common.flags import parser_for
from serving.common.http import install_error_handlers
from serving.common.lifecycle import ResourceLifecycle
from serving.common.metrics import RequestLatencyMiddleware, metrics_response
from serving.common.service import serve_app, service_version

log = logging.getLogger(__name__)


def create_app(config: AuditSinkConfig) -> FastAPI:
    """An audit sink for this config; nothing is opened until the app's lifespan starts."""
    metrics = AuditSinkMetrics()
    lifecycle = ResourceLifecycle(make_store(config.store), name="audit store")
    app = FastAPI(
        title="kfloop audit sink",
        version=service_version(),
        description="Append-only, hash-chained audit trail of ranking decisions and KServe payloads.",
        lifespan=lifecycle.lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestLatencyMiddleware, histogram=metrics.request_latency)
    app.include_router(_ops_routes(lifecycle, metrics))
    app.include_router(_write_routes(config, lifecycle, metrics))
    app.include_router(_read_routes(config, lifecycle))
    app.openapi = openapi.openapi_builder(app)  # type: ignore[method-assign]
    return app


def _ops_routes(lifecycle: ResourceLifecycle, metrics: AuditSinkMetrics) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="The audit store is open")
    async def readyz() -> dict[str, str]:
        lifecycle.require_ready()
        return {"status": "ready"}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return metrics_response(metrics.registry)

    @router.get("/v1/chain/head", summary="Seq and hash of the last record (record it elsewhere to anchor)")
    async def chain_head() -> dict[str, Any]:
        lifecycle.require_ready()
        head = await asyncio.to_thread(lifecycle.resource.head)
        return {"seq": head.seq, "hash": head.hash}

    return router


class Ingest:
    """Validates records and appends the valid ones, counting outcomes."""

    def __init__(self, store: SqlStore, metrics: AuditSinkMetrics) -> None:
        self.store = store
        self.metrics = metrics

    async def records(self, items: list[Any]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{} for _ in items]
        valid, where = [], []
        for i, item in enumerate(items):
            parsed = _validate(item)
            if isinstance(parsed, list):
                results[i] = {"index": i, "status": "rejected", "errors": parsed}
                self.metrics.count(_kind_of(item), "rejected")
            else:
                valid.append(parsed)
                where.append(i)
        for i, record, appended in zip(where, valid, await self.append(valid), strict=True):
            results[i] = {"index": i, "record_id": appended.record_id, "status": appended.status, "seq": appended.seq}
            self.metrics.count(record.kind, appended.status)
        return results

    async def append(self, records: list[Any]) -> list[Any]:
        if not records:
            return []
        started = time.perf_counter()
        appended = await asyncio.to_thread(self.store.append, records)
        self.metrics.append_seconds.observe(time.perf_counter() - started)
        self.metrics.head_seq.set(max(a.seq for a in appended))
        return appended


def _validate(item: Any) -> Any:
    """The parsed record, or the list of [{field, reason}] that is wrong with it. Items come from
    `parse_json` (which refuses NaN and Infinity): their values are JSON already."""
    if not isinstance(item, dict):
        return [{"field": "(record)", "reason": "must be a JSON object"}]
    try:
        return parse_record(item, parsed_json=True)
    except ValidationError as exc:
        return field_errors(exc, union_tags=RECORD_TAGS)


def _kind_of(item: Any) -> str:
    kind = item.get("kind", "decision") if isinstance(item, dict) else None
    return kind if kind in RECORD_TAGS else "unknown"


def _write_routes(config: AuditSinkConfig, lifecycle: ResourceLifecycle, metrics: AuditSinkMetrics) -> APIRouter:
    router = APIRouter(tags=["records"])
    ingest = Ingest(lifecycle.resource, metrics)

    @router.post(
        "/v1/decisions",
        summary="Append audit records (decisions, explanations)",
        description='Body: {"records": [...]} (or a bare list). Each record gets its own result: accepted, '
        "duplicate (already stored: safe to resend), conflict (same id, different content: not stored) or "
        "rejected (with the fields at fault). 200 unless every record was rejected (422).",
    )
    async def post_records(request: Request) -> Response:
        lifecycle.require_ready()
        items = _records_in(parse_json(await read_body(request, config.max_body_bytes)), config.max_batch_records)
        results = await ingest.records(items)
        counts = {s: sum(r["status"] == s for r in results) for s in ("accepted", "duplicate", "conflict", "rejected")}
        if counts["rejected"] == len(results):
            noun = "the record was" if len(results) == 1 else f"all {len(results)} records were"
            raise InvalidInput(f"{noun} rejected", details=results)
        return JSONResponse({"results": results, **counts})

    @router.post(
        "/v1/cloudevents",
        summary="Append a KServe payload-logger CloudEvent (binary or structured mode)",
        description="ce-type org.kubeflow.serving.inference.request or .response; ce-id is the request id.",
    )
    async def post_cloudevent(request: Request) -> Response:
        lifecycle.require_ready()
        body = await read_body(request, config.max_body_bytes)
        received_at = rfc3339(utc_now())
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() == cloudevents.STRUCTURED:
            message = cloudevents.from_structured(parse_json(body), received_at)
        else:
            message = cloudevents.from_binary(request.headers, body, received_at)
        (appended,) = await ingest.append([message])
        metrics.count(message.kind, appended.status)
        answer = {"record_id": appended.record_id, "status": appended.status, "seq": appended.seq}
        return JSONResponse(answer, status_code=409 if appended.status == "conflict" else 200)

    return router


def _records_in(payload: Any, limit: int) -> list[Any]:
    items = payload.get("records") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise MalformedRequest(
            'send {"records": [...]} or a JSON list of records',
            details=[{"field": "records", "reason": "must be a list of records"}],
        )
    if not items:
        raise InvalidInput("no records", details=[{"field": "records", "reason": "must not be empty"}])
    if len(items) > limit:
        problem = {"field": "records", "reason": f"at most {limit} records in one request", "limit_records": limit}
        raise PayloadTooLarge(f"{len(items)} records in one request; at most {limit}", details=[problem])
    return items


def _read_routes(config: AuditSinkConfig, lifecycle: ResourceLifecycle) -> APIRouter:
    router = APIRouter(tags=["records"])

    @router.get(
        "/v1/decisions",
        summary="Stored records, in chain order (page on with after_seq)",
        description="A decision whose `inputs.item_context` names an item context was recorded without its "
        "candidates and item features: they are in that item_context record (chain order puts it before the "
        "decisions naming it). A page's `item_contexts` holds every context its decisions name that `records` "
        "does not (it may lie before the page or outside the filter), so each page is complete on its own.",
    )
    async def list_records(
        since: Annotated[str | None, Query(description="RFC 3339; records with ts >= since")] = None,
        until: Annotated[str | None, Query(description="RFC 3339; records with ts < until")] = None,
        model_version: Annotated[str | None, Query()] = None,
        user: Annotated[str | None, Query(description="pseudonymous user id")] = None,
        kind: Annotated[list[str] | None, Query(description="record kinds (default: all)")] = None,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        lifecycle.require_ready()
        query = RowQuery(
            since=_timestamp_param("since", since),
            until=_timestamp_param("until", until),
            model_version=model_version,
            user_id=user,
            kinds=_kinds_param(kind),
            after_seq=after_seq,
        )
        page = min(limit or config.max_page_records, config.max_page_records)
        rows, contexts = await asyncio.to_thread(_page_rows, lifecycle.resource, query, page)
        last = rows[-1].seq if len(rows) == page else None
        return {
            "records": [_row_json(r) for r in rows],
            "item_contexts": [_row_json(r) for r in contexts],
            "next_after_seq": last,
        }

    @router.get(
        "/v1/decisions/{request_id}",
        summary="Everything recorded about one request id, and the item context its decision refers to",
    )
    async def get_request(request_id: str) -> dict[str, Any]:
        lifecycle.require_ready()
        rows = await asyncio.to_thread(_request_rows, lifecycle.resource, request_id)
        if not rows:
            raise NotFound(f"nothing recorded for request_id {request_id!r}")
        return {"records": [_row_json(r) for r in rows]}

    return router


def _request_rows(store: SqlStore, request_id: str) -> list[StoredRow]:
    """A request's records, and the item context its decision refers to (the decision's inputs need it)."""
    rows = _first_rows(store, RowQuery(request_id=request_id), 10_000)
    return sorted(rows + referenced_contexts(store, rows), key=lambda row: row.seq)


def _page_rows(store: SqlStore, query: RowQuery, n: int) -> tuple[list[StoredRow], list[StoredRow]]:
    """A page of rows, and the item contexts its decisions refer to that the page does not hold."""
    rows = _first_rows(store, query, n)
    on_page = {row.seq for row in rows}
    return rows, [row for row in referenced_contexts(store, rows) if row.seq not in on_page]


def _first_rows(store: SqlStore, query: RowQuery, n: int) -> list[StoredRow]:
    rows = []
    for row in store.rows(query, page_size=n):
        rows.append(row)
        if len(rows) == n:
            break
    return rows


def _timestamp_param(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise InvalidInput(f"bad {name}", details=[{"field": name, "reason": str(exc)}]) from None


def _kinds_param(kinds: list[str] | None) -> tuple[str, ...]:
    unknown = sorted(set(kinds or ()) - RECORD_TAGS)
    if unknown:
        reason = f"unknown kind(s) {', '.join(unknown)}; use {', '.join(sorted(RECORD_TAGS))}"
        raise InvalidInput("bad kind", details=[{"field": "kind", "reason": reason}])
    return tuple(kinds or ())


def _row_json(row: StoredRow) -> dict[str, Any]:
    out = row.as_dict()
    out["record"] = json.loads(row.record)
    return out


def run(config: AuditSinkConfig) -> int:
    """Serve under uvicorn until SIGTERM/SIGINT."""
    serve_app(create_app(config), config.host, config.port)
    return 0


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> AuditSinkConfig:
    """The config file with the command line's settings over it (None: not given); the store URL from
    --store-url, else $KFLOOP_AUDIT_STORE_URL, else the file's."""
    overrides = {"host": args.host, "port": args.port, "store.url": store_url_given(args.store_url, environ)}
    return load_config(AuditSinkConfig, args.config, overrides)


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop audit sink` (and `python -m serving.audit`): the same flags, parsed."""
    return run(config_from_args(args, os.environ))


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.audit`."""
    return run_from_args(parser_for("serving.audit", flags.HELP, flags.add_arguments).parse_args(argv))
