"""Retrain: run the training pipeline, once at a time and not again within the cooldown, and deploy a blessed
result as the canary.

Phases, each recorded before the next begins:
    pending   -> starting:  the run's reference and the deployable versions before it are stored
    starting  -> running:   launched (or found launched, after a crash); audit record `started`
    running   -> deploying: the run ended well (a failed run is done: `failed`)
    deploying -> done:      a new deployable version is the canary (`deployed`), or nothing is (`not_deployed`);
                            with experiments on, it goes into an experiment instead (`experiment`: the experiment
                            action, opened with this step, deploys it stage by stage)
"""

from __future__ import annotations

import logging
from typing import Any

from kfloop.audit.canonical import parse_rfc3339
from kfloop.deploy import ServingTarget, change_serving, deploy, load_or_seed
from kfloop.errors import InvalidInput, KfloopError
from monitoring.controller.actions import PAUSED, Step, alert_summary, retry_or_fail
from monitoring.controller.config import RetrainConfig, RollbackConfig
from monitoring.controller.runners import Runner, RunnerError
from monitoring.controller.store import DONE, ActionRow, ControllerStore

log = logging.getLogger(__name__)


def _seconds_between(earlier: str, later: str) -> float:
    return (parse_rfc3339(later) - parse_rfc3339(earlier)).total_seconds()


class Retrain:
    name = "retrain"

    def __init__(
        self,
        runner: Runner,
        target: ServingTarget,
        config: RetrainConfig,
        retries: RollbackConfig,
        *,
        experiment: str | None = None,
    ) -> None:
        self.runner = runner
        self.target = target
        self.config = config
        self.retries = retries
        self.experiment = experiment
        """The action kind a blessed result is handed to (None: it is deployed as a plain canary)."""

    def admit(self, store: ControllerStore, now: str) -> tuple[str, str] | None:
        """One run at a time; none within the cooldown after the last one ended."""
        running = store.open_actions(self.name)
        if running:
            return "busy", f"retraining run {running[0].id} is under way and answers these alerts too"
        last = store.last_run_end(self.name)
        if last is not None:
            waited = _seconds_between(last["ended_at"], now)
            if waited < self.config.cooldown_s:
                return "cooldown", (
                    f"the last run ended {waited:.0f} s ago; no new run within the {self.config.cooldown_s:.0f} s "
                    "cooldown"
                )
        return None

    def step(self, action: ActionRow, paused: bool, now: str) -> Step:
        phases = {"pending": self._plan, "starting": self._launch, "running": self._watch, "deploying": self._deploy}
        return phases[action.phase](action, paused, now)

    def _ref(self, action: ActionRow) -> str:
        return f"kfloop-retrain-{action.id}"

    def _plan(self, action: ActionRow, paused: bool, now: str) -> Step:
        if paused:
            return Step(DONE, outcome=PAUSED, reason="the controller is paused: no run was started")
        # The serving state is seeded now if it never was, so that it names what serves before the run (seeded
        # later, the run's own result would be taken for the stable version).
        serving = load_or_seed(self.target.state_dir, self.target.manifest, self.target.registry)
        details = {
            "run": self.runner.describe(self._ref(action)),
            "deployable_before": self.target.registry.deployable(),
            "stable_before": serving.stable.version if serving.stable else None,
        }
        return Step("starting", details=details)

    def _launch(self, action: ActionRow, paused: bool, now: str) -> Step:
        ref = self._ref(action)
        handle = self.runner.find(ref, action.details)
        if handle is None and paused:
            return Step(DONE, outcome=PAUSED, reason="the controller is paused: no run was started")
        if handle is None:
            try:
                handle = self.runner.launch(ref, action.details)
            except (RunnerError, OSError) as exc:
                return Step(DONE, outcome="failed", reason=f"the run could not be started: {exc}")
        where = action.details.get("run", {})
        log.info("retraining run %s started: %s", ref, where)
        return Step(
            "running",
            details={"handle": handle, "started_at": now},
            outcome="started",
            reason=f"retraining run {ref} started for {alert_summary(action)}",
            wait_s=self.config.poll_interval_s,
        )

    def _watch(self, action: ActionRow, paused: bool, now: str) -> Step:
        ref, handle = self._ref(action), action.details.get("handle", {})
        try:
            ended = self.runner.poll(ref, handle)
        except Exception as exc:  # the KFP API may be down for a while: the run goes on; look again
            log.warning("retraining run %s: cannot tell its state (%s); looking again later", ref, exc)
            return Step("running", wait_s=self.config.poll_interval_s)
        if ended is None:
            return self._still_running(action, ref, handle, now)
        run_end = {"success": ended.success, "ended_at": now, "detail": ended.detail}
        if not ended.success:
            reason = f"retraining run {ref} failed: {ended.detail}" + _log_hint(action)
            return Step(DONE, details={"run_end": run_end}, outcome="failed", reason=reason)
        return Step("deploying", details={"run_end": run_end})

    def _still_running(self, action: ActionRow, ref: str, handle: dict[str, Any], now: str) -> Step:
        started = action.details.get("started_at", action.created_at)
        if _seconds_between(started, now) > self.config.timeout_s and not action.details.get("stop_sent"):
            log.warning("retraining run %s: over its %s s timeout; stopping it", ref, self.config.timeout_s)
            try:
                self.runner.stop(ref, handle)
            except Exception as exc:
                log.warning("retraining run %s: stopping failed (%s)", ref, exc)
            return Step("running", details={"stop_sent": now}, wait_s=self.config.poll_interval_s)
        return Step("running", wait_s=self.config.poll_interval_s)

    def _deploy(self, action: ActionRow, paused: bool, now: str) -> Step:
        before = set(action.details.get("deployable_before", []))
        new = [v for v in self.target.registry.deployable() if v not in before]
        if not new:
            reason = "the run registered no new deployable version (not blessed, or identical to a registered one)"
            return Step(DONE, outcome="not_deployed", reason=reason)
        version = new[-1]
        if paused:
            return Step(DONE, outcome="not_deployed", reason=f"the controller is paused: {version} was not deployed")
        if self.experiment is not None:
            reason = f"{version} is blessed: its experiment starts (stage by stage, each gated)"
            follow = (self.experiment, {"candidate": version, "retrain_action": action.id})
            return Step(
                DONE,
                details={"candidate": version},
                outcome="experiment",
                reason=reason,
                model_version=version,
                follow_up=follow,
            )
        percent = self.config.canary_percent
        state = load_or_seed(self.target.state_dir, self.target.manifest, self.target.registry)
        if state.canary is not None and state.canary.version == version:  # deployed before a crash
            return _deployed(version, percent, f"{version} is the canary already")
        note = f"retrained for {alert_summary(action)} (controller action {action.id})"

        def as_canary(state: Any) -> Any:
            return deploy(state, self.target.registry, version, percent, operator=action.actor, reason=note)

        try:
            change = change_serving(self.target, "deploy", as_canary)
        except InvalidInput as exc:  # e.g. another canary is running: not replaced without a person
            return Step(DONE, outcome="not_deployed", reason=f"{version} was not deployed: {exc.message}")
        except (KfloopError, OSError) as exc:
            return retry_or_fail(action, exc, self.retries, f"deploying {version}")
        return _deployed(version, percent, change.summary, change.cluster_patch)


def _deployed(version: str, percent: int, summary: str, patch: dict[str, Any] | None = None) -> Step:
    details = {"deployed": version, "canary_percent": percent, "serving_change": summary, "cluster_patch": patch}
    return Step(DONE, details=details, outcome="deployed", reason=summary, model_version=version, variant="canary")


def _log_hint(action: ActionRow) -> str:
    where = action.details.get("run", {}).get("log")
    return f"; log: {where}" if where else ""
