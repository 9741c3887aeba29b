"""Explanations in the audit trail, on demand from stored decisions and for a background sample.

`FeatureEchoExplainer` is a test double of the *explainer* (the real one, on Alibi, comes later): tiny,
deterministic, computed only from the decision it is given. The store it writes to is real.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pytest

from kfloop.audit import BackgroundExplainer, Decision, explain_decision, is_sampled, verify_store
from kfloop.audit.store import RowQuery
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.cli.commands import audit as audit_cli
from kfloop.errors import DataIntegrityError, KfloopError, NotFound, NotReady
from tests.unit.test_audit_support import decision, decisions, tamper_sqlite


class FeatureEchoExplainer:
    """Test double of an explainer: 'attributes' each numeric input to itself, scaled by the top score."""

    name = "feature-echo-test-double"

    def __call__(self, decision: Decision) -> dict[str, Any]:
        top = decision.candidates[0].score if decision.candidates else 0.0
        numbers = {k: v for k, v in decision.inputs.items() if isinstance(v, int | float)}
        return {"model_version_seen": decision.model_version, "attributions": {k: v * top for k, v in numbers.items()}}


@pytest.fixture
def store(tmp_path):
    with SqliteStore(tmp_path / "audit.db") as s:
        s.append(decisions(20))
        yield s


def test_an_on_demand_explanation_is_computed_from_the_stored_decision_and_kept(store):
    explanation, appended = explain_decision(store, "req-000007", FeatureEchoExplainer())
    assert appended.status == "accepted" and appended.seq == 21
    stored_decision = next(store.rows(RowQuery(request_id="req-000007", kinds=("decision",))))
    assert explanation.decision_hash == stored_decision.hash
    assert explanation.model_version == decision(7).model_version
    assert explanation.explanation == {
        "model_version_seen": decision(7).model_version,
        "attributions": {"age_days": 7.0},
    }
    assert explanation.trigger == "on_demand" and explanation.user_id == decision(7).user_id
    kinds = [r.kind for r in store.rows(RowQuery(request_id="req-000007"))]
    assert kinds == ["decision", "explanation"]
    assert verify_store(store).ok


def test_explaining_twice_keeps_both(store):
    explain_decision(store, "req-000003", FeatureEchoExplainer())
    explain_decision(store, "req-000003", FeatureEchoExplainer())
    assert len(list(store.rows(RowQuery(request_id="req-000003", kinds=("explanation",))))) == 2


def test_an_unknown_request_id_is_not_found(store):
    with pytest.raises(NotFound, match="req-999999"):
        explain_decision(store, "req-999999", FeatureEchoExplainer())


def test_an_altered_decision_is_not_explained(store, tmp_path):
    store.close()
    tamper_sqlite(
        tmp_path / "audit.db",
        "UPDATE audit_records SET record = replace(record, '\"age_days\":5', "
        "'\"age_days\":50') WHERE request_id = 'req-000005'",
    )
    store.open()
    with pytest.raises(DataIntegrityError, match="does not match its hash"):
        explain_decision(store, "req-000005", FeatureEchoExplainer())


def test_sampling_is_deterministic_and_close_to_the_rate():
    ids = [f"req-{i:06d}" for i in range(10_000)]
    sampled = [i for i in ids if is_sampled(i, 0.1)]
    assert sampled == [i for i in ids if is_sampled(i, 0.1)]
    assert 900 < len(sampled) < 1100
    assert not any(is_sampled(i, 0.0) for i in ids) and all(is_sampled(i, 1.0) for i in ids)


def test_the_background_explainer_explains_the_sample(store):
    background = BackgroundExplainer(FeatureEchoExplainer(), store.append, rate=0.3)
    background.start()
    queued = [d.request_id for d in decisions(20) if background.offer(d)]
    background.stop()
    assert queued == [d.request_id for d in decisions(20) if is_sampled(d.request_id, 0.3)] and queued
    explained = [r.request_id for r in store.rows(RowQuery(kinds=("explanation",)))]
    assert explained == queued and background.explained == len(queued)
    assert {json.loads(r.record)["trigger"] for r in store.rows(RowQuery(kinds=("explanation",)))} == {"sampled"}


class UnavailableAtFirst(FeatureEchoExplainer):
    """An explainer still loading for its first `times` calls (or failing for good, with `error`)."""

    def __init__(self, times: int, error: type[KfloopError] = NotReady) -> None:
        self.times, self.error, self.calls = times, error, 0

    def __call__(self, decision: Decision) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error("explainer model is still loading")
        return super().__call__(decision)


def settled(background: BackgroundExplainer, n: int) -> None:
    """Wait until n samples were explained or failed (stop() does not wait for an unavailable explainer)."""
    deadline = time.monotonic() + 10
    while background.explained + background.failed < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_sample_is_retried_while_the_explainer_is_unavailable_and_kept_once_it_answers(store):
    explainer = UnavailableAtFirst(times=3)
    background = BackgroundExplainer(explainer, store.append, rate=1.0, retry_initial_s=0.01, retry_max_s=0.02)
    background.start()
    background.offer(decisions(1)[0])
    settled(background, 1)
    background.stop()
    assert background.explained == 1 and background.failed == 0 and background.retries == 3
    assert [r.request_id for r in store.rows(RowQuery(kinds=("explanation",)))] == [decisions(1)[0].request_id]


def test_other_failures_and_an_unavailable_explainer_past_the_retry_window_count_as_failed(store):
    broken = UnavailableAtFirst(times=1, error=KfloopError)
    background = BackgroundExplainer(broken, store.append, rate=1.0, retry_initial_s=0.01)
    background.start()
    background.offer(decisions(1)[0])
    background.stop()
    assert (background.failed, background.retries, broken.calls) == (1, 0, 1)  # not retried

    down = UnavailableAtFirst(times=10**6)
    background = BackgroundExplainer(down, store.append, rate=1.0, retry_for_s=0.05, retry_initial_s=0.01)
    background.start()
    background.offer(decisions(1)[0])
    settled(background, 1)
    background.stop()
    assert background.failed == 1 and background.retries >= 1 and background.explained == 0
    assert not list(store.rows(RowQuery(kinds=("explanation",))))


def test_a_full_queue_skips_samples_without_blocking(store):
    background = BackgroundExplainer(FeatureEchoExplainer(), store.append, rate=1.0, queue_size=2)
    offered = [background.offer(d) for d in decisions(5)]  # not started: nothing drains the queue
    assert offered == [True, True, False, False, False] and background.skipped_full == 3


def test_cli_explain_uses_the_configured_explainer(store, tmp_path, capsys):
    args = argparse.Namespace(
        config=None,
        store_url=f"sqlite:///{tmp_path / 'audit.db'}",
        explainer="tests.unit.test_audit_explain:FeatureEchoExplainer",
        request_id="req-000011",
    )
    assert audit_cli.explain(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["request_id"] == "req-000011" and printed["explainer"] == FeatureEchoExplainer.name
    assert printed["seq"] == 21
    args.explainer = "no_such_module:factory"
    assert audit_cli.explain(args) == 2
    assert "explainer 'no_such_module:factory' cannot be loaded" in capsys.readouterr().err


def test_the_default_explainer_is_the_serving_stacks_alibi_explainer():
    assert audit_cli.AuditClientConfig().explainer == "serving.explainer.audit:explainer"


def test_stopping_does_not_wait_for_an_unavailable_explainer(store):
    background = BackgroundExplainer(UnavailableAtFirst(times=10**6), store.append, rate=1.0, retry_initial_s=0.01)
    background.start()
    background.offer(decisions(1)[0])
    deadline = time.monotonic() + 10
    while background.retries == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread = background._thread
    background.stop(timeout_s=10)  # the retry window is 300 s: a stop that honoured it would leave it running
    assert thread is not None and not thread.is_alive() and background.failed == 1
