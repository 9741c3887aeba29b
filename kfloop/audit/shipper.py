"""Ships spooled records to the audit sink: in order, in batches, retrying with backoff, and moving the
spool's offset only once the sink has acknowledged a batch."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from kfloop.audit.config import SpoolConfig
from kfloop.audit.record import RECORD_TAGS, AnyRecord, parse_record
from kfloop.audit.spool import SINK, Spool, SpoolCursor, decode_payload
from kfloop.audit.store.base import ACKNOWLEDGED, SqlStore
from kfloop.errors import KfloopError, field_errors

log = logging.getLogger(__name__)

REJECTED_FILE = "rejected.jsonl"
SKIPPED = "skipped"
"""A receipt for a record that had nothing to deliver to this receiver (e.g. no impressions in it)."""


@dataclass(frozen=True)
class Receipt:
    """The sink's answer for one record: accepted, duplicate, conflict or rejected (with details)."""

    status: str
    detail: Any = None


Deliver = Callable[[list[bytes]], list[Receipt]]
"""Delivers records (each one's JSON, as spooled) and answers a receipt per record, in order."""


class DeliveryFailed(KfloopError):
    """The batch was not acknowledged (sink unreachable, overloaded, erroring): retry it later."""

    http_status = 503


class BatchTooLarge(DeliveryFailed):
    """The sink refused the batch's size: retry with smaller batches."""


class MalformedBatch(DeliveryFailed):
    """The sink could not read the batch as JSON: some record in it is not JSON (a writer's bug, since its
    line's checksum held). The shipper then sends the batch again without such records."""


class HttpSink:
    """Delivers batches to an audit sink's POST /v1/decisions (stdlib HTTP: usable in every environment), or to
    another receiver that answers alike: a result per record (`status`, `errors`), in order; 422 with the
    results as `details` when it took none (the collector's POST /v1/events, with `path` and `batch_key`)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        path: str = "/v1/decisions",
        batch_key: str = "records",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + path
        self.timeout_s = timeout_s
        self.batch_key = batch_key.encode()
        self.headers = {"Content-Type": "application/json", **(headers or {})}

    def __call__(self, payloads: list[bytes]) -> list[Receipt]:
        body = b'{"' + self.batch_key + b'":[' + b",".join(payloads) + b"]}"  # the records' JSON, as spooled
        request = urllib.request.Request(self.url, data=body, method="POST", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = self._error_payload(exc)
            results = payload.get("details") if exc.code == 422 else None
            if not isinstance(results, list):
                raise DeliveryFailed(f"{self.url} answered {exc.code}: {payload.get('message', '')}") from None
            return _receipts(results, len(payloads))
        except (urllib.error.URLError, OSError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise DeliveryFailed(f"sink {self.url} unreachable: {exc}") from None
        return _receipts(payload.get("results"), len(payloads))

    @staticmethod
    def _error_payload(exc: urllib.error.HTTPError) -> dict[str, Any]:
        if exc.code == 413:
            raise BatchTooLarge("the sink refused the batch as too large") from None
        try:
            payload = json.loads(exc.read() or b"{}")
        except ValueError:
            payload = {}
        payload = payload if isinstance(payload, dict) else {}
        if exc.code == 400:
            raise MalformedBatch(f"sink answered 400: {payload.get('message', '')}") from None
        return payload


def _receipts(results: Any, expected: int) -> list[Receipt]:
    if not isinstance(results, list) or len(results) != expected:
        raise DeliveryFailed(f"sink answered an unexpected result list for {expected} records")
    return [Receipt(r.get("status", "?"), r.get("errors")) for r in results]


def store_delivery(store: SqlStore) -> Deliver:
    """Deliver straight into a store (no sink in between): a predictor writing to PostgreSQL itself."""

    def deliver(payloads: list[bytes]) -> list[Receipt]:
        receipts: list[Receipt | None] = [None] * len(payloads)
        valid, where = [], []
        for i, payload in enumerate(payloads):
            raw = decode_payload(payload)
            if raw is None:
                receipts[i] = _NOT_JSON
                continue
            try:
                valid.append(parse_record(raw))
                where.append(i)
            except ValidationError as exc:
                receipts[i] = Receipt("rejected", field_errors(exc, union_tags=RECORD_TAGS))
        for i, appended in zip(where, store.append(valid), strict=True):
            receipts[i] = Receipt(appended.status, {"seq": appended.seq})
        return [r for r in receipts if r is not None]

    return deliver


_NOT_JSON = Receipt("rejected", [{"field": "(record)", "reason": "not a JSON object"}])


def _readable(payload: bytes) -> Any:
    """A record for the dead-letter file: decoded, or its text if it is not JSON."""
    record = decode_payload(payload)
    return record if record is not None else payload.decode("utf-8", "replace")


@dataclass
class ShipperStats:
    shipped: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    failed_attempts: int = 0
    last_error: str | None = None
    batch_size: int = 0


class Shipper:
    """A background thread emptying a spool (its sink cursor, or another one) into `deliver`."""

    def __init__(
        self,
        spool: Spool | SpoolCursor,
        deliver: Deliver,
        *,
        batch_max_records: int = 500,
        idle_wait_s: float = 0.5,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 30.0,
        name: str = "audit shipper",
        rejected_file: str = REJECTED_FILE,
    ) -> None:
        self.spool = spool
        self.deliver = deliver
        self.name = name
        self.rejected_file = rejected_file
        self.idle_wait_s = idle_wait_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.stats = ShipperStats(batch_size=batch_max_records)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ship_once(self) -> int:
        """Deliver the next batch and commit it; returns records shipped (0: nothing pending).
        Raises DeliveryFailed, leaving the offset where it was."""
        batch = self.spool.read_batch(self.stats.batch_size)
        if batch is None:
            return 0
        if batch.payloads:
            try:
                receipts = self.deliver(batch.payloads)
            except MalformedBatch:
                receipts = self._deliver_json_only(batch.payloads)
            self._dead_letter(batch.payloads, receipts)
        self.spool.commit(batch.end)
        self.stats.shipped += len(batch.payloads)
        return len(batch.payloads)

    def _deliver_json_only(self, payloads: list[bytes]) -> list[Receipt]:
        """The batch again without the records that are not JSON objects (those are refused here)."""
        receipts: list[Receipt | None] = [None] * len(payloads)
        readable = []
        for i, payload in enumerate(payloads):
            if decode_payload(payload) is None:
                receipts[i] = _NOT_JSON
            else:
                readable.append(i)
        if readable:
            delivered = self.deliver([payloads[i] for i in readable])
            for i, receipt in zip(readable, delivered, strict=True):
                receipts[i] = receipt
        return [r for r in receipts if r is not None]

    def drain(self, timeout_s: float) -> bool:
        """Ship until the spool is empty or the time is up (retrying failures); True if emptied."""
        deadline = time.monotonic() + timeout_s
        delay = self.retry_initial_s
        while time.monotonic() < deadline:
            try:
                if self.ship_once() == 0 and self.spool.read_batch(1) is None:
                    return True
                delay = self.retry_initial_s
            except DeliveryFailed as exc:
                self._note_failure(exc)
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, self.retry_max_s)
        return self.spool.read_batch(1) is None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name.replace(" ", "-"), daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.spool.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        delay = self.retry_initial_s
        while not self._stop.is_set():
            try:
                shipped = self.ship_once()
                delay = self.retry_initial_s
            except BatchTooLarge as exc:
                self._note_failure(exc)
                self.stats.batch_size = max(1, self.stats.batch_size // 2)
                continue
            except DeliveryFailed as exc:
                self._note_failure(exc)
                self._stop.wait(delay * (1 + random.random() / 4))  # jitter: replicas do not retry in step
                delay = min(delay * 2, self.retry_max_s)
                continue
            except Exception as exc:  # a bug or a full disk: keep the records, keep trying, say so
                log.exception("%s: unexpected error", self.name)
                self._note_failure(exc)
                self._stop.wait(self.retry_max_s)
                continue
            if shipped == 0:
                self.spool.wait_for_records(self.idle_wait_s)

    def _note_failure(self, exc: Exception) -> None:
        self.stats.failed_attempts += 1
        self.stats.last_error = str(exc)
        log.warning("%s: delivery failed (%s); records stay in the spool", self.name, exc)

    def _dead_letter(self, payloads: list[bytes], receipts: Sequence[Receipt]) -> None:
        """Records the sink will never take (invalid, or conflicting with a stored one): set them aside, with
        the reason, so the spool keeps moving and a human can act."""
        bad = [
            (_readable(payload), r)
            for payload, r in zip(payloads, receipts, strict=True)
            if r.status not in ACKNOWLEDGED and r.status != SKIPPED
        ]
        self.stats.duplicates += sum(r.status == "duplicate" for r in receipts)
        if not bad:
            return
        path: Path = self.spool.dir / self.rejected_file
        with open(path, "a", encoding="utf-8") as stream:
            for raw, receipt in bad:
                stream.write(json.dumps({"status": receipt.status, "detail": receipt.detail, "record": raw}) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        self.stats.dead_lettered += len(bad)
        log.error("%s: %d record(s) refused by the receiver; kept in %s", self.name, len(bad), path)


class AuditRecorder:
    """What a predictor holds: `record()` returns once the records are fsynced locally; a background
    thread ships them to the sink."""

    def __init__(
        self, config: SpoolConfig, *, deliver: Deliver | None = None, cursors: tuple[str, ...] = (SINK,)
    ) -> None:
        self.config = config
        self.spool = Spool(config.dir, segment_max_bytes=config.segment_max_bytes, cursors=cursors)
        self.shipper = Shipper(
            self.spool,
            deliver or HttpSink(config.sink_url, timeout_s=config.request_timeout_s),
            batch_max_records=config.batch_max_records,
            idle_wait_s=config.idle_wait_s,
            retry_initial_s=config.retry_initial_s,
            retry_max_s=config.retry_max_s,
        )

    def open(self) -> None:
        self.spool.open()
        self.shipper.start()

    def record(self, *records: AnyRecord) -> None:
        self.spool.append(records)

    def close(self, *, drain_timeout_s: float = 5.0) -> None:
        """Stop the background thread, give the sink a last chance, close the spool (what is left ships
        after the next start)."""
        self.shipper.stop()
        self.shipper.drain(drain_timeout_s)
        self.spool.close()

    def __enter__(self) -> AuditRecorder:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
