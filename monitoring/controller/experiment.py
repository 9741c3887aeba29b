"""Experiment: a new blessed version walks its stages (shadow -> canary 10% -> 50% -> 100%), each gated.

Phases, each recorded before the next begins:
    pending  -> stage:     the experiment is created; stage 0 is registered, then deployed (`stage_started:NAME`)
    stage    -> stage:     the gate passed (a shadow's duration, mirrored requests and off-policy comparison, a
                           test's "non-inferior"): the next stage is registered and deployed
                           (`stage_started:NAME`, with the passed stage's numbers); an inconclusive off-policy
                           comparison that holds is recorded once (`held:NAME`) and the stage waits
    stage    -> approval:  the last stage passed and `approval_before_full` asks for `kfloop approve`
    stage    -> done:      promoted to 100% (`promoted`), rolled back (`rolled_back`: "inferior" by the test or
                           by the shadow's off-policy interval, or undecided at max_samples and preregistered
                           so), or `ended` (the candidate was removed otherwise)
    approval -> done:      approved: `promoted`

A test stage's preregistration (margin, alpha, min and max sample) is written to the experiment store before the
stage's serving change, and its sha256 goes in the audit trail with the stage; the store refuses to change it.
Every evaluation is appended to the store (the statistic's series); every decision's numbers are in the audit
trail. While the controller is paused, a running stage is frozen: nothing is promoted or rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfloop.audit.canonical import parse_rfc3339
from kfloop.deploy import NoCanary, ServingTarget, change_serving, load_or_seed, promote, read_state, rollback
from kfloop.deploy.actions import stage as stage_change
from kfloop.errors import InvalidInput, KfloopError, NotReady
from kfloop.experiments import Preregistration, evaluate
from kfloop.experiments.shadow import ShadowRows
from kfloop.experiments.store import ExperimentStore, Stage
from monitoring.controller.actions import PAUSED, Step, retry_or_fail
from monitoring.controller.config import ExperimentConfig, RollbackConfig, StageConfig
from monitoring.controller.counts import Counts, baseline_of, read_counts, read_mirrored, since
from monitoring.controller.shadow import ShadowEvidence, ShadowQuery, evidence_reader, judge
from monitoring.controller.store import DONE, ActionRow, ControllerStore

KIND = "experiment"


def experiment_id_of(action_id: str) -> str:
    return "exp-" + action_id.removeprefix("act-")


class RunExperiment:
    name = KIND

    def __init__(
        self,
        target: ServingTarget,
        config: ExperimentConfig,
        store: ExperimentStore,
        retries: RollbackConfig,
        read: Callable[[str], Counts] = read_counts,
        read_mirrored: Callable[[str, str], int] = read_mirrored,
        read_shadow: Callable[[ShadowQuery], ShadowRows] | ShadowEvidence | None = None,
    ) -> None:
        self.target, self.config, self.store, self.retries, self.read = target, config, store, retries, read
        self.read_mirrored = read_mirrored
        self.read_shadow = read_shadow or evidence_reader(config)
        """The shadow's slates joined to production's logged slots (an off-policy gate's evidence)."""

    def admit(self, store: ControllerStore, now: str) -> tuple[str, str] | None:
        running = store.open_actions(self.name)
        if running:
            return "busy", f"experiment action {running[0].id} is under way; one candidate at a time"
        return None

    def step(self, action: ActionRow, paused: bool, now: str) -> Step:
        if paused and action.phase == "pending":
            return Step(DONE, outcome=PAUSED, reason="the controller is paused: the experiment was not started")
        if paused:
            return Step(action.phase, wait_s=self.config.poll_interval_s)
        phases = {"pending": self._begin, "stage": self._evaluate, "approval": self._await_approval}
        step = phases[action.phase](action, now)
        experiment = step.details.get("experiment") or action.details.get("experiment")
        if step.phase == DONE and experiment is not None:  # however it ended (a failed retry too): on record
            self.store.finish(experiment, step.outcome or "failed", step.reason, now)
        return step

    # -- starting stages ------------------------------------------------------------------------------
    def _begin(self, action: ActionRow, now: str) -> Step:
        candidate = action.details["candidate"]
        state = load_or_seed(self.target.state_dir, self.target.manifest, self.target.registry)
        if state.stable is None or state.stable.version == candidate:
            return Step(DONE, outcome="failed", reason=f"no stable version other than {candidate} to compare with")
        experiment = experiment_id_of(action.id)
        self.store.create(experiment, candidate, state.stable.version, action.id, now)
        details = {"experiment": experiment, "control": state.stable.version, "decisions": {}}
        return self._enter({**action.details, **details}, action, 0, now, "")

    def _enter(self, details: dict[str, Any], action: ActionRow, index: int, now: str, before: str) -> Step:
        """Register stage `index` (its test preregistered, its baseline counts), then deploy it."""
        config = self.config.stages[index]
        try:
            registered = self.store.start_stage(details["experiment"], self._stage(details, config, index, now))
        except NotReady as exc:  # the joiner's counts cannot be read: the stage cannot start yet
            return Step(
                action.phase, details={**details, "last_error": exc.message}, wait_s=self.config.poll_interval_s
            )
        placement = {"percent": config.percent, "mode": config.mode, "experiment": details["experiment"]}
        note = f"experiment {details['experiment']} stage {config.name} (controller action {action.id})"

        def to_stage(state: Any) -> Any:
            return stage_change(
                state, self.target.registry, details["candidate"], placement, operator=action.actor, reason=note
            )

        try:
            change = change_serving(self.target, "deploy", to_stage)
        except InvalidInput as exc:
            return _ended(details, "failed", f"stage {config.name} not deployed: {exc.message}")
        except (KfloopError, OSError) as exc:
            return retry_or_fail(action, exc, self.retries, f"deploying stage {config.name}")
        digest = registered.digest
        prereg = registered.preregistration
        registration = f"; preregistration sha256 {digest}: {_terms(prereg)}" if prereg else ""
        entered = {
            **details,
            "stage": index,
            "stage_name": config.name,
            "stage_started_at": registered.started_at,
            "baseline": registered.baseline,
            "preregistration": prereg.model_dump(mode="json") if prereg else None,
            "digest": digest,
            "serving_change": change.summary,
        }
        return Step(
            "stage",
            details=entered,
            outcome=f"stage_started:{config.name}",  # one audit record per stage (records are keyed by outcome)
            reason=f"{before}stage {config.name} started: {change.summary}{registration}",
            model_version=details["candidate"],
            variant="canary",
            wait_s=self.config.poll_interval_s,
        )

    def _stage(self, details: dict[str, Any], config: StageConfig, index: int, now: str) -> Stage:
        prereg, baseline = None, {}
        if config.test is not None:
            keys = [(details["candidate"], "canary"), (details["control"], "stable")]
            baseline = baseline_of(self.read(self.config.counts_url), keys)
            prereg = Preregistration(**config.test.model_dump(), created_at=parse_rfc3339(now))
        return Stage(
            index=index,
            name=config.name,
            mode=config.mode,
            percent=config.percent,
            preregistration=prereg,
            digest=prereg.digest() if prereg else None,
            gate=config.model_dump(mode="json"),
            baseline=baseline,
            started_at=now,
            ended_at=None,
            decision=None,
            outcome=None,
        )

    # -- running stages -------------------------------------------------------------------------------
    def _evaluate(self, action: ActionRow, now: str) -> Step:
        details, index = action.details, action.details["stage"]
        config = self.config.stages[index]
        state = read_state(self.target.state_dir)
        if state is None or state.canary is None or state.canary.version != details["candidate"]:
            reason = f"{details['candidate']} is no longer the canary (rolled back or replaced outside the experiment)"
            self.store.end_stage(details["experiment"], index, now, "none", "ended")
            return _ended(details, "ended", reason)
        if config.test is None:
            return self._shadow(action, config, now)
        try:
            counts = self.read(self.config.counts_url)
        except NotReady as exc:
            return Step("stage", details={"last_error": exc.message}, wait_s=self.config.poll_interval_s)
        prereg = Preregistration.model_validate(details["preregistration"])
        baseline = details["baseline"]
        decision = evaluate(
            prereg,
            control=since(counts, baseline, (details["control"], "stable")),
            candidate=since(counts, baseline, (details["candidate"], "canary")),
        )
        self.store.observe(details["experiment"], index, now, decision)
        if decision.outcome == "continue":
            return Step("stage", wait_s=self.config.poll_interval_s)
        decided = {**details, "decisions": {**details.get("decisions", {}), config.name: decision.to_dict()}}
        verdict = "passed" if decision.outcome == "promote" else "rolled_back"
        self.store.end_stage(details["experiment"], index, now, decision.decision, verdict)
        if decision.outcome == "promote":
            return self._passed(decided, action, now, f"stage {config.name} passed: {decision.reason}")
        return self._roll_back(decided, action, f"stage {config.name}: {decision.reason}")

    def _shadow(self, action: ActionRow, config: StageConfig, now: str) -> Step:
        if action.details.get("held"):  # its off-policy gate was inconclusive and holds: until someone acts
            return Step("stage", wait_s=self.config.poll_interval_s)
        started = parse_rfc3339(action.details["stage_started_at"])
        waited = (parse_rfc3339(now) - started).total_seconds()
        if waited < config.duration_s:
            return Step("stage", wait_s=min(self.config.poll_interval_s, config.duration_s - waited))
        mirrored = ""
        if config.min_mirrored:
            assert self.config.mirror_counts_url is not None  # the config's validator requires it
            try:
                answered = self.read_mirrored(self.config.mirror_counts_url, action.details["candidate"])
            except NotReady as exc:
                return Step("stage", details={"last_error": exc.message}, wait_s=self.config.poll_interval_s)
            if answered < config.min_mirrored:
                return Step("stage", details={"mirrored": answered}, wait_s=self.config.poll_interval_s)
            mirrored = f", {answered} mirrored requests answered (its gate: {config.min_mirrored})"
        passed = f"mirrored for {waited:.0f} s (its gate: {config.duration_s:.0f} s){mirrored}"
        if config.off_policy is not None:
            return self._off_policy(action, config, now, passed)
        self.store.end_stage(action.details["experiment"], action.details["stage"], now, "duration", "passed")
        return self._passed(action.details, action, now, f"stage {config.name} passed: {passed}")

    def _off_policy(self, action: ActionRow, config: StageConfig, now: str, passed: str) -> Step:
        """The shadow's off-policy value against production's, computed once the evidence is in (or late)."""
        assert config.off_policy is not None and self.read_shadow is not None  # the config's validator
        details = action.details
        query = ShadowQuery(
            details["experiment"], details["candidate"], details["control"], details["stage_started_at"]
        )
        ready_at = details.get("shadow_ready_at") or now  # when duration and mirrored requests were first met
        collecting = (parse_rfc3339(now) - parse_rfc3339(ready_at)).total_seconds()
        try:
            result = judge(config.off_policy, self.read_shadow(query), collecting)
        except NotReady as exc:
            return Step(
                "stage",
                details={"last_error": exc.message, "shadow_ready_at": ready_at},
                wait_s=self.config.poll_interval_s,
            )
        if result.comparison is None:
            waiting = {"matched": result.rows.matched, "shadow_ready_at": ready_at}
            return Step("stage", details=waiting, wait_s=self.config.poll_interval_s)
        compared = result.comparison
        numbers = {"kind": "off_policy", **compared.to_dict()}
        self.store.observe_numbers(details["experiment"], details["stage"], now, compared.decision, numbers)
        decided = {**details, "decisions": {**details.get("decisions", {}), config.name: numbers}}
        reason = f"stage {config.name}: {compared.summary()}"
        if result.verdict == "hold":
            held = f"{reason}; held in shadow (on_inconclusive: hold) until an operator acts"
            return Step(
                "stage",
                details={**decided, "held": True},
                outcome=f"held:{config.name}",
                reason=held,
                model_version=details["candidate"],
                variant="canary",
            )
        outcome = "passed" if result.verdict == "pass" else "rolled_back"
        self.store.end_stage(details["experiment"], details["stage"], now, compared.decision, outcome)
        if result.verdict == "pass":
            return self._passed(decided, action, now, f"stage {config.name} passed: {passed}; {compared.summary()}")
        return self._roll_back(decided, action, reason)

    def _passed(self, details: dict[str, Any], action: ActionRow, now: str, reason: str) -> Step:
        following = details["stage"] + 1
        if following < len(self.config.stages):
            return self._enter(details, action, following, now, f"{reason}; ")
        if self.config.approval_before_full:
            wait = f"{reason}; waiting for `kfloop approve {details['experiment']}` before 100%"
            return Step("approval", details=details, outcome="awaiting_approval", reason=wait, wait_s=1.0)
        return self._promote(details, action, now, reason)

    def _await_approval(self, action: ActionRow, now: str) -> Step:
        experiment = self.store.get(action.details["experiment"])
        if experiment.approved_by is None:
            return Step("approval", wait_s=min(self.config.poll_interval_s, 2.0))
        note = f"approved by {experiment.approved_by} at {experiment.approved_at}"
        return self._promote(action.details, action, now, note)

    # -- ending ---------------------------------------------------------------------------------------
    def _promote(self, details: dict[str, Any], action: ActionRow, now: str, reason: str) -> Step:
        candidate = details["candidate"]

        def to_full(state: Any) -> Any:
            if state.canary is None or state.canary.version != candidate:
                raise NoCanary(f"{candidate} is no longer the canary")
            return promote(state, operator=action.actor)

        try:
            change = change_serving(self.target, "promote", to_full)
        except NoCanary as exc:
            return _ended(details, "ended", f"{reason}; not promoted: {exc.message}")
        except (KfloopError, OSError) as exc:
            return retry_or_fail(action, exc, self.retries, f"promoting {candidate}")
        return _ended({**details, "serving_change": change.summary}, "promoted", f"{reason}; {change.summary}")

    def _roll_back(self, details: dict[str, Any], action: ActionRow, reason: str) -> Step:
        note = f"experiment {details['experiment']} {reason} (controller action {action.id})"
        try:
            change = change_serving(
                self.target,
                "rollback",
                lambda state: rollback(state, operator=action.actor, reason=note, canary_only=True),
            )
        except NoCanary as exc:
            return _ended(details, "ended", f"{reason}; {exc.message}")
        except (KfloopError, OSError) as exc:
            return retry_or_fail(action, exc, self.retries, f"rolling back {details['candidate']}")
        return _ended({**details, "serving_change": change.summary}, "rolled_back", f"{reason}; {change.summary}")


def _ended(details: dict[str, Any], outcome: str, reason: str) -> Step:
    return Step(
        DONE, details=details, outcome=outcome, reason=reason, model_version=details["candidate"], variant="canary"
    )


def _terms(prereg: Preregistration) -> str:
    return (
        f"margin {prereg.margin}, alpha {prereg.alpha}, min_samples {prereg.min_samples}, max_samples "
        f"{prereg.max_samples}, at max_samples {prereg.on_max_sample}"
    )
