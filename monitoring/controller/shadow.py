"""A shadow stage's off-policy evidence, read where it is recorded, and its gate.

The shadow's slates: the audit sink's decisions of the candidate's version in variant `shadow`, of this
experiment (the predictor records them, with propensities, and answers the router, which drops the answer).
Production's served slots and their clicks: the event log (impressions of the control version in variant
`stable`, clicks naming their request and item); a shadow's slate is never an impression there. Joined by request
id and compared by `kfloop.experiments.shadow`.

When: once the stage's duration and mirrored requests are met (a shadow still loading its model answers none), the
rows are counted at each poll, and the comparison is computed once, when `min_matched` matched slots are in or
`max_wait_s` later on what there is, so its interval is not looked at again and again until it happens to pass.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kfloop.audit.canonical import parse_rfc3339
from kfloop.errors import NotReady
from kfloop.eventlog import read_events
from kfloop.experiments.shadow import LoggedSlot, ShadowComparison, ShadowRows, ShadowSlate, compare_shadow, join_shadow
from kfloop.ope import EvidenceThresholds
from monitoring.controller.config import ExperimentConfig, OffPolicyGateConfig

_PAGE = 1000
_COLUMNS = ["type", "request_id", "item_id", "position", "propensity", "model_version", "variant"]


@dataclass(frozen=True)
class ShadowQuery:
    """Which shadow, of which experiment, against which production version, since when."""

    experiment: str
    candidate: str
    control: str
    since: str


class ShadowEvidence:
    """Reads the shadow's slates (audit sink) and production's logged slots (event log), joined.

    The slates are read on from where the previous call stopped (the audit trail only grows), so a stage polled
    every few seconds does not fetch its whole shadow again each time; the event log is read whole each call
    (clicks keep arriving for slots already read)."""

    def __init__(
        self,
        audit_url: str,
        event_log_uri: str,
        timeout_s: float = 60.0,
        fetch: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.audit_url, self.event_log_uri, self.timeout_s = audit_url.rstrip("/"), event_log_uri, timeout_s
        self.fetch = fetch or self._fetch
        """GET a URL's JSON (NotReady when it cannot be read)."""
        self._read: dict[ShadowQuery, tuple[int, list[ShadowSlate]]] = {}
        """Per query: the last audit sequence number read, and the shadow's slates so far."""

    def __call__(self, query: ShadowQuery) -> ShadowRows:
        slates = self.slates(query)
        wanted = {s.request_id for s in slates}
        return join_shadow(slates, self.logged(query, wanted))

    def slates(self, query: ShadowQuery) -> list[ShadowSlate]:
        after, slates = self._read.get(query, (0, []))
        slates = list(slates)
        while True:
            params = {
                "model_version": query.candidate,
                "kind": "decision",
                "since": query.since,
                "after_seq": after,
                "limit": _PAGE,
            }
            page = self._get(params)
            for row in page["records"]:
                record = row["record"]
                if record.get("variant") == "shadow" and record.get("experiment") == query.experiment:
                    slates.append(shadow_slate(record))
                after = max(after, int(row["seq"]))
            if page["next_after_seq"] is None:
                break
        self._read = {query: (after, slates)}  # one stage at a time: older queries are done with
        return slates

    def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.fetch(f"{self.audit_url}/v1/decisions?{urllib.parse.urlencode(params)}")

    def _fetch(self, url: str) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as answer:
                return json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise NotReady(f"the audit sink at {self.audit_url} cannot be read: {exc}") from None

    def logged(self, query: ShadowQuery, requests: set[str]) -> list[LoggedSlot]:
        """Production's served slots of `requests` (with a propensity) and whether each was clicked."""
        try:
            events = read_events(self.event_log_uri, columns=_COLUMNS, since=parse_rfc3339(query.since)).to_pylist()
        except OSError as exc:
            raise NotReady(f"the event log {self.event_log_uri} cannot be read: {exc}") from None
        mine = [e for e in events if e["request_id"] in requests]
        clicked = {(e["request_id"], e["item_id"]) for e in mine if e["type"] == "click"}
        return [
            LoggedSlot(
                e["request_id"],
                e["item_id"],
                e["position"],
                e["propensity"],
                (e["request_id"], e["item_id"]) in clicked,
            )
            for e in mine
            if e["type"] == "impression"
            and e["model_version"] == query.control
            and e["variant"] == "stable"
            and e["propensity"] is not None
        ]


def shadow_slate(record: dict[str, Any]) -> ShadowSlate:
    """A shadow decision record's slate (position -> item) and, when it has them, its slot probabilities (the
    exact weights; a record without them is weighed by matching)."""
    table = record.get("slot_probabilities")
    exact = {(item, j): p for item, row in table.items() for j, p in enumerate(row, start=1)} if table else None
    return ShadowSlate(record["request_id"], {c["position"]: c["item_id"] for c in record["candidates"]}, exact)


Verdict = Literal["wait", "pass", "hold", "rollback"]


@dataclass(frozen=True)
class ShadowGateResult:
    verdict: Verdict
    rows: ShadowRows
    comparison: ShadowComparison | None
    """None while waiting for `min_matched` (the comparison is computed once)."""


def judge(gate: OffPolicyGateConfig, rows: ShadowRows, collecting_s: float) -> ShadowGateResult:
    """Wait for evidence (`collecting_s`: since the shadow met its duration and mirrored requests) until the
    deadline, then compare once and say what the stage does."""
    if rows.matched < gate.min_matched and collecting_s < gate.max_wait_s:
        return ShadowGateResult("wait", rows, None)
    comparison = compare_shadow(
        rows,
        gate.margin,
        gate.min_matched,
        estimator=gate.estimator,
        ci_level=gate.ci_level,
        n_boot=gate.n_boot,
        thresholds=EvidenceThresholds(
            min_rewards=gate.min_clicks,
            min_effective_rewards=gate.min_effective_clicks,
            min_ess=gate.min_effective_sample,
        ),
    )
    verdicts: dict[str, Verdict] = {"non_inferior": "pass", "inferior": "rollback"}
    return ShadowGateResult(verdicts.get(comparison.decision, gate.on_inconclusive), rows, comparison)


def evidence_reader(config: ExperimentConfig) -> ShadowEvidence | None:
    """The reader an experiment's off-policy gates use (None when no stage has one)."""
    if config.audit_url is None or config.event_log_uri is None:
        return None
    return ShadowEvidence(config.audit_url, config.event_log_uri)
