"""The controller's loop: observe (alerts arrive; open actions are looked at), decide (which action, if any),
act (one step of an action), record (the step in the state, its outcome in the audit trail).

`receive` runs on the webhook's thread: it remembers the alerts and commits the decisions they call for,
nothing more, so Alertmanager's call returns at once. A single worker thread advances open actions one step
at a time (`reconcile_once`); on start it finds the actions a killed process left open and carries them on.
Audit records go through an outbox in the same transactions as the steps they describe, then to the spool.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from kfloop.audit.canonical import rfc3339
from kfloop.audit.record import AnyRecord, ControllerAction, parse_record, record_id_of, record_json
from kfloop.errors import InvalidInput, KfloopError
from kfloop.experiments.store import ExperimentStore
from monitoring.controller.actions import PAUSED, ActionKind, Step
from monitoring.controller.alerts import Notification, WebhookAlert
from monitoring.controller.store import DONE, ActionRow, ControllerStore

log = logging.getLogger(__name__)

NONE = "none"
PAUSE_SETTING = "pause"


class Recorder(Protocol):
    """Where audit records go (kfloop.audit.AuditRecorder: fsynced in a spool, shipped to the sink)."""

    def open(self) -> None: ...

    def record(self, *records: AnyRecord) -> None: ...

    def close(self) -> None: ...


def utc_now() -> str:
    return rfc3339(datetime.now(UTC))


def new_action_id() -> str:
    return f"act-{uuid.uuid4().hex[:16]}"


class Controller:
    def __init__(
        self,
        store: ControllerStore,
        kinds: Mapping[str, ActionKind],
        recorder: Recorder,
        *,
        actor: str,
        reconcile_interval_s: float = 1.0,
        clock: Callable[[], str] = utc_now,
        experiments: ExperimentStore | None = None,
    ) -> None:
        self.store = store
        self.experiments = experiments
        """The experiments' record (opened and closed with the state), for the experiment kind and /metrics."""
        self.kinds = dict(kinds)
        self.recorder = recorder
        self.actor = actor
        self.reconcile_interval_s = reconcile_interval_s
        self.clock = clock
        self._due: dict[str, float] = {}
        """Monotonic time before which an open action is not looked at again (in memory: a restart looks at
        every open action at once)."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flushing = threading.Lock()
        self._worker: threading.Thread | None = None
        self._ready = False
        self.failure: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    def open(self, *, start_worker: bool = True) -> None:
        """Open the state and the audit spool, hand on records a killed process left in the outbox, and start
        the worker (which first carries on the actions it left open). Opening an open controller does nothing."""
        if self._ready:
            return
        self.store.open()
        if self.experiments is not None:
            self.experiments.open()
        self.recorder.open()
        self.flush_outbox()
        if start_worker:
            self._stop.clear()
            self._worker = threading.Thread(target=self._run, name="controller-reconcile", daemon=True)
            self._worker.start()
        self._ready = True

    def close(self) -> None:
        """Stop the worker between steps; a running retraining run goes on and is found again next start."""
        self._ready = False
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(60)
            self._worker = None
        self.recorder.close()
        if self.experiments is not None:
            self.experiments.close()
        self.store.close()

    # -- observe and decide ---------------------------------------------------------------------------
    def receive(self, notification: Notification) -> list[ActionRow]:
        """Remember the alerts; for those never seen before that fire, commit what they call for."""
        now = self.clock()
        with self.store.transaction():
            new = self.store.remember(notification.alerts, now)
            decided = [self._decide(name, alerts, now) for name, alerts in _by_action(new).items()]
        self.flush_outbox()
        self._wake.set()
        return decided

    def _decide(self, name: str, alerts: list[WebhookAlert], now: str) -> ActionRow:
        kind = self.kinds.get(name)
        row = ActionRow(
            id=new_action_id(),
            kind=name if kind is not None else NONE,
            actor=self.actor,
            phase="pending",
            created_at=now,
            updated_at=now,
            alerts=[a.evidence().model_dump(mode="json") for a in alerts],
        )
        refusal = self._refusal(name, kind, now)
        if refusal is not None:
            outcome, reason = refusal
            row = row.advanced(now, phase=DONE, outcome=outcome, reason=reason, finished_at=now)
        self.store.insert_action(row)
        self.store.link_alerts([a.key for a in alerts], row.id)
        if row.phase == DONE:
            self._audit(row, row.outcome or "", row.reason)
        log.info("alerts %s: %s, %s", [a.labels["alertname"] for a in alerts], row.kind, row.outcome or "to do")
        return row

    def _refusal(self, name: str, kind: ActionKind | None, now: str) -> tuple[str, str] | None:
        if name == NONE:
            return "recorded", "the alerts ask for no action: recorded for people to act on"
        if kind is None:
            return "unsupported", f"this controller has no action {name!r}: recorded only"
        if self.paused() is not None:
            return PAUSED, "the controller is paused (kfloop resume): recorded, nothing done"
        return kind.admit(self.store, now)

    # -- act and record -------------------------------------------------------------------------------
    def reconcile_once(self) -> float:
        """Advance each open action whose time has come by one step; seconds until one is due next."""
        paused = self.paused() is not None
        soonest = self.reconcile_interval_s
        failures = []
        for action in self.store.open_actions():
            wait = self._due.get(action.id, 0.0) - time.monotonic()
            if wait <= 0:
                try:
                    wait = self.advance(action, paused)
                except Exception as exc:  # a bug: the other actions go on; this one is tried again later
                    log.exception("action %s (%s): step failed", action.id, action.kind)
                    failures.append(f"{action.id}: {type(exc).__name__}: {exc}")
                    wait = self.reconcile_interval_s
                    self._due[action.id] = time.monotonic() + wait
            soonest = min(soonest, max(wait, 0.0))
        self.failure = "; ".join(failures) or None
        return soonest

    def advance(self, action: ActionRow, paused: bool) -> float:
        """One step of one action, recorded; seconds until it wants looking at again."""
        try:
            step = self.kinds[action.kind].step(action, paused, self.clock())
        except KfloopError as exc:  # a refusal that another try will not change (config, registry contents)
            step = Step(DONE, outcome="failed", reason=f"{action.kind} failed: {exc.message}")
        now = self.clock()
        updated = _applied(action, step, now)
        if updated != action:
            with self.store.transaction():
                self.store.save_action(updated)
                if step.outcome is not None:
                    self._audit(updated, step.outcome, step.reason)
                if step.follow_up is not None:
                    self.open_action(*step.follow_up, model_version=updated.model_version)
            self.flush_outbox()
            self._wake.set()
        if updated.phase == DONE:
            self._due.pop(action.id, None)
            log.info("action %s (%s): %s: %s", action.id, action.kind, step.outcome, step.reason)
            return 0.0
        wait = step.wait_s or 0.0
        self._due[action.id] = time.monotonic() + wait
        return wait

    def open_action(self, kind: str, details: dict[str, Any], *, model_version: str | None = None) -> ActionRow:
        """A new action of `kind`, not called for by an alert (an experiment for a new version): pending, for the
        worker to carry out."""
        if kind not in self.kinds:
            raise InvalidInput(f"this controller has no action {kind!r}")
        now = self.clock()
        row = ActionRow(
            id=new_action_id(),
            kind=kind,
            actor=self.actor,
            phase="pending",
            created_at=now,
            updated_at=now,
            details=details,
            model_version=model_version,
        )
        with self.store.transaction():
            self.store.insert_action(row)
        self._wake.set()
        return row

    def _audit(self, row: ActionRow, outcome: str, reason: str) -> None:
        """Put the record in the outbox (inside the caller's transaction)."""
        record = ControllerAction(
            action_id=row.id,
            ts=row.updated_at,
            action=row.kind,
            outcome=outcome,
            reason=reason[:4096],
            actor=row.actor,
            alerts=row.alerts,
            details=row.details,
            model_version=row.model_version,
            variant=row.variant,
        )
        data = record_json(record)
        self.store.add_to_outbox(record_id_of(data), json.dumps(data, sort_keys=True))

    def flush_outbox(self) -> None:
        """Hand the outbox to the audit spool (fsynced there), then forget it; a resend is deduplicated."""
        with self._flushing:  # one thread at a time: a record is handed on once
            for record_id, text in self.store.outbox():
                try:
                    self.recorder.record(parse_record(json.loads(text)))
                except Exception:
                    log.exception("audit record %s stays in the outbox; retried later", record_id)
                    return
                self.store.remove_from_outbox(record_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.reconcile_once()
                self.flush_outbox()
            except Exception as exc:  # a bug or a full disk: say so on /healthz, keep trying
                log.exception("reconcile failed")
                self.failure = f"{type(exc).__name__}: {exc}"
                wait = self.reconcile_interval_s
            self._wake.wait(wait)
            self._wake.clear()

    # -- the kill switch ------------------------------------------------------------------------------
    def paused(self) -> dict[str, Any] | None:
        """Who paused the controller, when and why; None when it acts."""
        return self.store.setting(PAUSE_SETTING)

    def pause(self, operator: str, reason: str) -> ActionRow:
        return self._switch("pause", PAUSED, operator, reason)

    def resume(self, operator: str, reason: str) -> ActionRow:
        return self._switch("resume", "resumed", operator, reason)

    def _switch(self, kind: str, outcome: str, operator: str, reason: str) -> ActionRow:
        """Set or clear the switch; recorded as an action of the operator's, in the audit trail too."""
        now = self.clock()
        with self.store.transaction():
            was = self.paused()
            value = {"by": operator, "at": now, "reason": reason} if kind == "pause" else None
            self.store.set_setting(PAUSE_SETTING, value)
            said = f"{reason} " if reason else ""
            before = "was paused" if was else "was acting"
            row = self.note(kind, operator, outcome, f"{said}({before})", {"previous": was}, now=now)
        self.flush_outbox()
        self._wake.set()
        return row

    def note(
        self,
        kind: str,
        operator: str,
        outcome: str,
        reason: str,
        details: dict[str, Any],
        *,
        now: str | None = None,
        model_version: str | None = None,
    ) -> ActionRow:
        """An operator's act (pause, an experiment's approval), done when recorded: in the state and the audit
        trail's outbox, in one transaction (the caller's, if it holds one)."""
        now = now or self.clock()
        row = ActionRow(
            id=new_action_id(),
            kind=kind,
            actor=operator,
            phase=DONE,
            created_at=now,
            updated_at=now,
            outcome=outcome,
            reason=reason,
            finished_at=now,
            details=details,
            model_version=model_version,
        )
        with self.store.transaction():
            self.store.insert_action(row)
            self._audit(row, outcome, row.reason)
        return row


def _by_action(alerts: list[WebhookAlert]) -> dict[str, list[WebhookAlert]]:
    """New firing alerts grouped by what they ask for (one action for all that ask for the same)."""
    grouped: dict[str, list[WebhookAlert]] = {}
    for alert in alerts:
        grouped.setdefault(alert.action, []).append(alert)
    return grouped


def _applied(action: ActionRow, step: Step, now: str) -> ActionRow:
    done = step.phase == DONE
    return action.advanced(
        now if (step.details or step.outcome or step.phase != action.phase) else action.updated_at,
        phase=step.phase,
        details={**action.details, **step.details},
        outcome=step.outcome if done else action.outcome,
        reason=step.reason if step.outcome else action.reason,
        model_version=step.model_version or action.model_version,
        variant=step.variant or action.variant,
        finished_at=now if done else None,
    )
