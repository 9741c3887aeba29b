"""The predictor's decision record: every decision is fsynced to the audit spool before it is answered.

Concurrent requests share one fsync (group commit): a writer thread takes every decision waiting, appends
them in one spool write, and then resolves each request's future. Sampled decisions are also handed to a
background explainer that asks the explainer service (the CPU-heavy work stays out of this process).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram

from kfloop.audit import AuditRecorder, BackgroundExplainer, Candidate, Decision, PolicyInfo, Shipper
from kfloop.audit.config import SpoolConfig
from kfloop.audit.shipper import Deliver
from kfloop.audit.spool import SINK, Spool, SpoolCursor
from kfloop.errors import KfloopError, NotReady
from kfloop.events.schema import Consent
from serving.common.model_io import Feed
from serving.common.names import EXPLAINER_NAME
from serving.common.protocol import RankResult
from serving.predictor.config import ImpressionLogConfig, PolicyConfig, PredictorAuditConfig
from serving.predictor.impressions import IMPRESSIONS, REJECTED_FILE, CollectorDelivery
from serving.predictor.item_contexts import ItemContexts

log = logging.getLogger(__name__)

_BATCH_MAX = 256
_STOPPING = "the predictor is stopping: the decision cannot be recorded"

AUDIT_WRITE_SECONDS = Histogram(
    "kfloop_predictor_audit_write_seconds",
    "Time from a decision's hand-off to its spool fsync (group commit included).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
AUDIT_BATCH_RECORDS = Histogram(
    "kfloop_predictor_audit_batch_records",
    "Decisions per spool append (one fsync each).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
AUDIT_FAILURES = Counter("kfloop_predictor_audit_failures_total", "Decisions that could not be made durable.")


def build_decision(
    result: RankResult,
    user_id: str,
    k: int,
    policy: PolicyConfig,
    feed: Feed,
    consent: Consent,
    experiment: tuple[str | None, str | None] = (None, None),
    slot_probabilities: dict[str, list[float]] | None = None,
) -> Decision:
    """The audit record of one decision: exactly the inputs the model was given, the slate with propensities,
    per slot the item's rank by score and how the policy drew it (greedy or exploration), and the consent it was
    made under, and the experiment and arm it was made in (None outside one); a shadow's, its policy's
    probability of every candidate at every slot (`slot_probabilities`).

    Every field is validated except `inputs`, which is attached after validation: its values were already
    checked (finite numbers, strings) when the model's input matrices were built, and walking ~2,000 values
    again in Python would cost more than scoring.
    """
    shown = len(result.slate)
    ranks, draws = result.ranks or [None] * shown, result.draws or [None] * shown
    candidates = [
        Candidate(
            item_id=result.candidates[index],
            position=position,
            score=float(result.scores[index]),
            propensity=propensity,
            rank=rank,
            draw=draw,
        )
        for position, (index, propensity, rank, draw) in enumerate(
            zip(result.slate, result.propensities, ranks, draws, strict=True), start=1
        )
    ]
    decision = Decision(
        request_id=result.request_id,
        ts=datetime.now(UTC),
        model_version=result.model_version,
        variant=result.variant,
        user_id=user_id,
        inputs={},
        candidates=candidates,
        policy=PolicyInfo(
            name=policy.exploration, epsilon=policy.epsilon if policy.exploration == "epsilon_greedy" else None
        ),
        consent=consent,
        experiment=experiment[0],
        arm=experiment[1],
        slot_probabilities=slot_probabilities,
    )
    return decision.model_copy(update={"inputs": decision_inputs(result.candidates, k, feed)})


def decision_inputs(candidates: list[str], k: int, feed: Feed) -> dict[str, Any]:
    """The recorded inputs: candidates (the item_id input), k, per-request values, per-candidate columns, and
    per-candidate columns mostly one value (that value, and the exceptions by candidate index). The explainer
    reads this layout back (serving.explainer.inputs.unpack_inputs)."""
    return {
        "candidates": list(candidates),
        "k": k,
        "user": feed.recorded_user,
        "items": feed.recorded_items,
        "items_mostly": feed.recorded_mostly,
    }


class DecisionWriter:
    """Group commit of decisions into an AuditRecorder's spool."""

    def __init__(self, recorder: AuditRecorder, contexts: ItemContexts | None = None) -> None:
        self.recorder = recorder
        self.contexts = contexts
        self._queue: queue.Queue[tuple[Decision, concurrent.futures.Future[None], float] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="decision-writer", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, decision: Decision) -> concurrent.futures.Future[None]:
        """The decision's future: done once it is durable; NotReady once the writer is stopping."""
        if self._stopped:
            raise NotReady(_STOPPING)
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put((decision, future, time.perf_counter()))
        # stop() can run between the check and the put (KServe calls it from a signal handler, on this very
        # thread): the writer is gone then, and nothing would ever resolve the future
        if self._stopped and not self._thread.is_alive() and not future.done():
            future.set_exception(NotReady(_STOPPING))
        return future

    def stop(self) -> None:
        """Write what was submitted, then stop; later submissions are refused."""
        self._stopped = True
        self._queue.put(None)
        if self._thread.ident is not None:  # started
            self._thread.join(30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < _BATCH_MAX:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._write(batch)
        self._refuse_the_rest()

    def _refuse_the_rest(self) -> None:
        """Submissions that came after the stop (from another thread, racing it): refused, never left hanging."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[1].set_exception(NotReady(_STOPPING))

    def _write(self, batch: list[Any]) -> None:
        decisions = [decision for decision, _, _ in batch]
        try:
            self.recorder.record(*(self.contexts.records(decisions) if self.contexts is not None else decisions))
        except Exception as exc:
            if self.contexts is not None:
                self.contexts.forget()
            AUDIT_FAILURES.inc(len(batch))
            log.exception("could not record %d decision(s) in the audit spool", len(batch))
            error = NotReady(f"the decision could not be recorded in the audit spool: {exc}")
            for _, future, _ in batch:
                future.set_exception(error)
            return
        AUDIT_BATCH_RECORDS.observe(len(batch))
        now = time.perf_counter()
        for _, future, started in batch:
            AUDIT_WRITE_SECONDS.observe(now - started)
            future.set_result(None)


class LingeringShipper(Shipper):
    """The audit shipper, waiting a moment after a partial batch so the next one is fuller.

    Each delivery costs a POST and an fsynced offset commit; shipped as they come, at a few hundred decisions
    a second, that is a batch of one each time and more CPU than deciding. Records are durable in the spool
    already, so the sink getting them `linger_s` later costs nothing."""

    def __init__(self, *args: Any, linger_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.linger_s = linger_s

    def ship_once(self) -> int:
        shipped = super().ship_once()
        if 0 < shipped < self.stats.batch_size and self.linger_s > 0:
            self._stop.wait(self.linger_s)
        return shipped


def lingering_recorder(config: SpoolConfig, linger_s: float, cursors: tuple[str, ...] = (SINK,)) -> AuditRecorder:
    recorder = AuditRecorder(config, cursors=cursors)
    recorder.shipper = lingering_shipper(recorder.spool, recorder.shipper.deliver, config, linger_s)
    return recorder


def lingering_shipper(
    spool: Spool | SpoolCursor, deliver: Deliver, config: SpoolConfig, linger_s: float, **kwargs: Any
) -> LingeringShipper:
    """A shipper of the spool (or one of its cursors) with the spool config's batch size and retry timings."""
    return LingeringShipper(
        spool,
        deliver,
        **{"batch_max_records": config.batch_max_records, **kwargs},
        idle_wait_s=config.idle_wait_s,
        retry_initial_s=config.retry_initial_s,
        retry_max_s=config.retry_max_s,
        linger_s=linger_s,
    )


def impression_shipper(spool: Spool, config: ImpressionLogConfig, audit: PredictorAuditConfig) -> LingeringShipper:
    """The second consumer of the audit spool: the decisions' impressions to the collector."""
    assert config.collector_url is not None and config.token_file is not None
    deliver = CollectorDelivery(config.collector_url, config.token_file, timeout_s=config.request_timeout_s)
    return lingering_shipper(
        spool.cursor(IMPRESSIONS),
        deliver,
        audit.spool,
        audit.ship_linger_s,
        batch_max_records=config.batch_max_decisions,
        name="impression shipper",
        rejected_file=REJECTED_FILE,
    )


_UNAVAILABLE = (502, 503, 504)


class RemoteExplainer:
    """The audit `Explainer` protocol, answered by the explainer service over HTTP (V1 :explain). An explainer
    that is down or not ready raises NotReady (the background explainer retries it); other failures do not."""

    name = EXPLAINER_NAME  # the service runs the same explainer

    def __init__(self, base_url: str, model_name: str, timeout_s: float) -> None:
        self.url = f"{base_url.rstrip('/')}/v1/models/{model_name}:explain"
        self.timeout_s = timeout_s

    def __call__(self, decision: Decision) -> dict[str, Any]:
        body = {"instances": [decision_explain_instance(decision)]}
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code in _UNAVAILABLE:  # loading or restarting: worth another try
                raise NotReady(f"explainer {self.url} answered {exc.code}") from None
            raise KfloopError(f"explainer {self.url}: {exc}") from None
        except (urllib.error.URLError, ConnectionError) as exc:  # down or not listening yet
            raise NotReady(f"explainer {self.url} unreachable: {exc}") from None
        except (OSError, ValueError) as exc:  # a timeout, a broken answer
            raise KfloopError(f"explainer {self.url}: {exc}") from None
        return payload["explanations"][0]


def decision_explain_instance(decision: Decision) -> dict[str, Any]:
    """What the explainer service needs to explain a decision exactly: its version, inputs and slate (each slot
    with its recorded rank and draw, which the explanation reads rather than infers)."""
    slate = [
        {"item_id": c.item_id, "rank": c.rank, "draw": c.draw}
        for c in sorted(decision.candidates, key=lambda c: c.position)
    ]
    return {"model_version": decision.model_version, "inputs": decision.inputs, "slate": slate}


class DecisionLog:
    """Everything the predictor does with a decision besides answering it."""

    def __init__(
        self,
        config: PredictorAuditConfig,
        model_name: str,
        spool_dir: Any,
        impressions: ImpressionLogConfig | None = None,
    ) -> None:
        spool = config.spool.model_copy(update={"dir": spool_dir})
        ships = impressions is not None and impressions.collector_url is not None
        self.recorder = lingering_recorder(spool, config.ship_linger_s, (SINK, IMPRESSIONS) if ships else (SINK,))
        self.impressions: Shipper | None = None
        if impressions is not None and ships:
            self.impressions = impression_shipper(self.recorder.spool, impressions, config)
        self.drain_on_stop_s = config.drain_on_stop_s
        self.closed = False
        self.writer = DecisionWriter(self.recorder, ItemContexts() if config.item_context_by_reference else None)
        self.explainer: BackgroundExplainer | None = None
        if config.explainer_url and config.explanations.rate > 0:
            remote = RemoteExplainer(config.explainer_url, model_name, config.explainer_timeout_s)
            self.explainer = BackgroundExplainer(
                remote,
                lambda records: self.recorder.record(*records),
                rate=config.explanations.rate,
                queue_size=config.explanations.queue_size,
                retry_for_s=config.explanations.retry_for_s,
            )

    def open(self) -> None:
        self.recorder.open()
        if self.impressions is not None:
            self.impressions.start()
        self.writer.start()
        if self.explainer is not None:
            self.explainer.start()

    def submit(self, decision: Decision) -> concurrent.futures.Future[None]:
        return self.writer.submit(decision)

    def after_answer(self, decision: Decision) -> None:
        if self.explainer is not None and not self.closed:
            self.explainer.offer(decision)

    def close(self) -> None:
        """Idempotent. Requests that come later are refused (503), never answered unrecorded."""
        if self.closed:
            return
        self.closed = True
        self.writer.stop()
        if self.explainer is not None:
            self.explainer.stop(timeout_s=5.0)
        draining = None
        if self.impressions is not None:  # both shippers drain at once; what is left ships after the next start
            self.impressions.stop()
            draining = threading.Thread(target=self.impressions.drain, args=(self.drain_on_stop_s,), daemon=True)
            draining.start()
        self.recorder.shipper.stop()
        self.recorder.shipper.drain(self.drain_on_stop_s)
        if draining is not None:
            draining.join()
        self.recorder.close(drain_timeout_s=0)
