"""Explanations kept in the audit trail: on demand for any stored decision, and for a background sample.

The explainer itself is pluggable: anything with a `name` and called with a Decision, returning a JSON
object. On demand, it is given the decision exactly as stored (after checking the stored row's hash), so the
explanation is of the inputs and model version that were really used.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from kfloop.audit.contexts import checked_record, stored_context
from kfloop.audit.record import DECISION, Decision, Explanation, context_ref, parse_record, utc_now, with_context
from kfloop.audit.store.base import Appended, RowQuery, SqlStore
from kfloop.errors import DataIntegrityError, NotFound, NotReady

log = logging.getLogger(__name__)


class Explainer(Protocol):
    """Explains one decision: a JSON object (e.g. feature attributions) for its inputs and model version."""

    name: str

    def __call__(self, decision: Decision) -> dict[str, Any]: ...


def stored_decision(store: SqlStore, request_id: str) -> tuple[Decision, str]:
    """The decision with this request id, as stored (with the item context it refers to put back in its
    inputs), and its chain hash. Refuses an altered row."""
    rows = list(store.rows(RowQuery(request_id=request_id, kinds=(DECISION,))))
    if not rows:
        raise NotFound(f"no decision with request_id {request_id!r} in the audit store")
    row = rows[0]
    record = checked_record(row, f"decision {request_id!r}")
    decision = parse_record(record)
    if not isinstance(decision, Decision):
        raise DataIntegrityError(f"the decision row of {request_id!r} (seq {row.seq}) holds a {decision.kind}")
    ref = context_ref(record)
    if ref is not None:
        inputs = with_context(decision.inputs, stored_context(store, ref))
        decision = decision.model_copy(update={"inputs": inputs})
    return decision, row.hash


def explain_decision(store: SqlStore, request_id: str, explainer: Explainer) -> tuple[Explanation, Appended]:
    """Explain a past decision from its stored inputs and model version; store and return the explanation."""
    decision, decision_hash = stored_decision(store, request_id)
    explanation = explanation_of(decision, explainer, trigger="on_demand", decision_hash=decision_hash)
    (appended,) = store.append([explanation])
    return explanation, appended


def explanation_of(
    decision: Decision, explainer: Explainer, *, trigger: str, decision_hash: str | None = None
) -> Explanation:
    return Explanation(
        request_id=decision.request_id,
        ts=utc_now(),
        model_version=decision.model_version,
        variant=decision.variant,
        user_id=decision.user_id,
        trigger=trigger,  # type: ignore[arg-type]
        explainer=explainer.name,
        decision_hash=decision_hash,
        explanation=explainer(decision),
    )


def is_sampled(request_id: str, rate: float) -> bool:
    """Deterministic: the same request id is always in or out of a given rate's sample."""
    if rate <= 0:
        return False
    draw = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")
    return draw < rate * 2**64


class BackgroundExplainer:
    """Explains a sample of decisions off the request path; explanations go to `keep` (e.g. the spool's
    append). A full queue skips the sample (counted) rather than slowing the predictor. An explainer that is
    unavailable for now (it raises NotReady: loading, restarting, unreachable) is retried with backoff for
    `retry_for_s`; any other failure counts that decision as failed at once."""

    def __init__(
        self,
        explainer: Explainer,
        keep: Callable[[Sequence[Explanation]], None],
        *,
        rate: float,
        queue_size: int = 1000,
        retry_for_s: float = 300.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
    ) -> None:
        self.explainer = explainer
        self.keep = keep
        self.rate = rate
        self.retry_for_s = retry_for_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.explained = 0
        self.skipped_full = 0
        self.failed = 0
        self.retries = 0
        self._queue: queue.Queue[Decision | None] = queue.Queue(maxsize=queue_size)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-explainer", daemon=True)
        self._thread.start()

    def offer(self, decision: Decision) -> bool:
        """Queue the decision if it is in the sample; True if queued."""
        if not is_sampled(decision.request_id, self.rate):
            return False
        try:
            self._queue.put_nowait(decision)
        except queue.Full:
            self.skipped_full += 1
            return False
        return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """Explain what is queued (without waiting for an unavailable explainer), then stop."""
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(None)
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while (decision := self._queue.get()) is not None:
            try:
                self.keep([self._explain(decision)])
                self.explained += 1
            except Exception:  # one bad explanation must not stop the others
                self.failed += 1
                log.exception("explaining %s failed", decision.request_id)

    def _explain(self, decision: Decision) -> Explanation:
        """The explanation, retrying while the explainer is only unavailable for now."""
        deadline = time.monotonic() + self.retry_for_s
        delay = self.retry_initial_s
        while True:
            try:
                return explanation_of(decision, self.explainer, trigger="sampled")
            except NotReady as exc:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    raise
                self.retries += 1
                log.info("explainer unavailable (%s); %s retried in %.1f s", exc, decision.request_id, delay)
                if self._stopping.wait(min(delay, left)):
                    raise
                delay = min(delay * 2, self.retry_max_s)
