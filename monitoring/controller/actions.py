"""What the controller can do about an alert: an `ActionKind` per value of the alerts' `action` label.

A kind is small steps: `admit` decides whether a new action may start at all (e.g. one retraining run at a
time), `step` observes where an open action is, decides the next move, makes it, and returns a `Step` that
the engine records before calling it again. Each step is safe to repeat after a crash: it looks before it
acts (is the canary still there? did the run start?). Rollback is here; retrain in retrain.py; the experiment
stages (promote, rollback by a sequential test) are further kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from kfloop.deploy import ClusterTarget, NoCanary, ServingState, ServingTarget, change_serving, rollback
from kfloop.deploy.cluster import ClusterError
from kfloop.errors import KfloopError, NotReady
from kfloop.registry import ModelRegistry
from monitoring.controller.config import ControllerConfig, RollbackConfig
from monitoring.controller.store import DONE, ActionRow, ControllerStore

PAUSED = "paused"
TRANSIENT = (ClusterError, NotReady, OSError)
"""Failures worth another try: the API server or a file system that may answer next time."""


@dataclass(frozen=True)
class Step:
    """What one step of an action came to. `phase` DONE with `outcome`: finished; another phase with an
    `outcome`: a milestone on the way, recorded in the audit trail (e.g. a run `started`)."""

    phase: str
    details: dict[str, Any] = field(default_factory=dict)
    """Merged into the action's details."""
    outcome: str | None = None
    reason: str = ""
    model_version: str | None = None
    variant: str | None = None
    wait_s: float | None = None
    """Look again after this long (None: at the next reconcile)."""
    follow_up: tuple[str, dict[str, Any]] | None = None
    """A new action (kind, details) to open with this step, in the same transaction (a retraining run's
    blessed result starts its experiment)."""


class ActionKind(Protocol):
    name: str

    def admit(self, store: ControllerStore, now: str) -> tuple[str, str] | None:
        """None: a new action may start; else (outcome, reason) recorded instead (e.g. busy, cooldown)."""
        ...

    def step(self, action: ActionRow, paused: bool, now: str) -> Step: ...


def serving_target(config: ControllerConfig) -> ServingTarget:
    """What `kfloop rollback` would change: the state directory, and in cluster mode the InferenceService."""
    serving = config.serving
    cluster = None
    if config.mode == "cluster":
        cluster = ClusterTarget(kubeconfig=serving.kubeconfig, context=serving.context, namespace=serving.namespace)
    return ServingTarget(serving.state_dir, serving.manifest, ModelRegistry(serving.registry_uri), cluster)


def alert_summary(action: ActionRow) -> str:
    """The alerts in a line: names and summaries (a history note, a reason)."""
    parts = []
    for alert in action.alerts:
        summary = alert.get("annotations", {}).get("summary", "")
        parts.append(f"{alert.get('alertname')}: {summary}" if summary else str(alert.get("alertname")))
    return "; ".join(parts) or "no alert"


def retry_or_fail(action: ActionRow, error: KfloopError | OSError, config: RollbackConfig, what: str) -> Step:
    """Another try later for a passing failure, until the attempts are used up: then failed."""
    attempts = int(action.details.get("attempts", 0)) + 1
    message = getattr(error, "message", None) or str(error)
    if isinstance(error, TRANSIENT) and attempts < config.attempts:
        return Step(action.phase, details={"attempts": attempts, "last_error": message}, wait_s=config.retry_s)
    return Step(DONE, details={"attempts": attempts}, outcome="failed", reason=f"{what} failed: {message}")


class Rollback:
    """The canary to 0%, through `kfloop rollback`'s own code; a canary-only rollback, so a repeat after a
    crash (or a second alert about the same canary) finds no canary and changes nothing."""

    name = "rollback"

    def __init__(self, target: ServingTarget, config: RollbackConfig) -> None:
        self.target = target
        self.config = config

    def admit(self, store: ControllerStore, now: str) -> tuple[str, str] | None:
        return None

    def step(self, action: ActionRow, paused: bool, now: str) -> Step:
        if paused:
            return Step(DONE, outcome=PAUSED, reason="the controller is paused: the canary was left as it was")
        alerted = _alerted_versions(action)
        note = f"{alert_summary(action)} (controller action {action.id})"

        def drop_canary(state: ServingState) -> Any:
            if state.canary is not None and alerted and state.canary.version not in alerted:
                named = ", ".join(sorted(alerted))
                raise NoCanary(f"the canary is {state.canary.version}, not {named} the alert names")
            return rollback(state, operator=action.actor, reason=note, canary_only=True)

        try:
            change = change_serving(self.target, "rollback", drop_canary)
        except NoCanary as exc:
            return Step(DONE, outcome="nothing_to_do", reason=f"{exc.message}: nothing was changed")
        except (KfloopError, OSError) as exc:
            return retry_or_fail(action, exc, self.config, "the rollback")
        canary = change.before.canary
        details = {"serving_change": change.summary, "cluster_patch": change.cluster_patch}
        return Step(
            DONE,
            details=details,
            outcome="rolled_back",
            reason=change.summary,
            model_version=canary.version if canary else None,
            variant="canary",
        )


def _alerted_versions(action: ActionRow) -> set[str]:
    """The canary versions the alerts name (a rule on the canary labels its model_version)."""
    return {
        a["labels"]["model_version"]
        for a in action.alerts
        if a.get("labels", {}).get("model_version") and a["labels"].get("variant", "canary") == "canary"
    }
