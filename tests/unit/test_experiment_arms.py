"""Sticky arms and the shadow: a user stays in one arm for a whole experiment (and across its stages), the
router splits by that arm and tells every predictor the experiment, a shadow is sent a copy of each request and
serves none, and each decision records its experiment and arm; a shadow's decision is never an impression."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kfloop.audit.record import record_id_of, record_json
from kfloop.experiments.arms import CANDIDATE, CONTROL, arm_of, bucket
from serving.local.router.requests import request_user
from serving.local.router.routes import CanaryRoute, Route, Routes
from serving.predictor.impressions import impressions_of
from tests.unit.test_audit_support import decision
from tests.unit.test_serving_router import PREDICT, client_for, predictors  # noqa: F401  (a fixture)

pytestmark = pytest.mark.serving

USERS = [f"user-{i}" for i in range(4000)]


def test_buckets_are_uniform_over_users_and_differ_between_experiments() -> None:
    first = np.array([bucket("exp-a", u) for u in USERS])
    assert first.min() >= 0 and first.max() < 100
    counts, _ = np.histogram(first, bins=10, range=(0, 100))
    expected = len(USERS) / 10
    assert ((counts - expected) ** 2 / expected).sum() < 27.9  # chi-square, 9 d.f., p = 0.001
    other = np.array([bucket("exp-b", u) for u in USERS])
    assert abs(np.corrcoef(first, other)[0, 1]) < 0.1


def test_a_user_keeps_the_arm_and_a_candidate_user_stays_one_as_the_share_grows() -> None:
    for user in USERS[:500]:
        assert arm_of("exp-a", user, 10) == arm_of("exp-a", user, 10)
        if arm_of("exp-a", user, 10) == CANDIDATE:
            assert arm_of("exp-a", user, 50) == CANDIDATE == arm_of("exp-a", user, 100)
    assert {arm_of("exp-a", u, 0) for u in USERS} == {CONTROL}
    share = np.mean([arm_of("exp-a", u, 10) == CANDIDATE for u in USERS])
    assert abs(share - 0.10) <= 4 * np.sqrt(0.1 * 0.9 / len(USERS))


def test_the_router_finds_the_user_of_a_v1_and_a_v2_body() -> None:
    assert request_user({"instances": [{"user_id": "u-1"}, {"user_id": "u-2"}]}) == "u-1"
    v2 = {"inputs": [{"name": "k", "data": [3]}, {"name": "user_id", "datatype": "BYTES", "data": ["u-9"]}]}
    assert request_user(v2) == "u-9"
    for nobody in ({"instances": []}, {"instances": [{"user_id": 3}]}, {"inputs": [{"name": "user_id"}]}, {}):
        assert request_user(nobody) is None


def _experiment_routes(stable, canary_url: str, percent: int, mode: str = "canary") -> Routes:
    return Routes(
        stable=Route(urls=(stable.url,), version="v-stable"),
        canary=CanaryRoute(urls=(canary_url,), version="v-canary", percent=percent, mode=mode, experiment="exp-7"),
    )


def test_during_an_experiment_each_user_always_gets_their_arm(tmp_path, predictors) -> None:  # noqa: F811
    stable, canary = predictors
    users = USERS[:300]
    with client_for(tmp_path, _experiment_routes(stable, canary.url, 30)) as client:
        answers = {
            (u, client.post(PREDICT, json={"instances": [{"user_id": u}]}).json()["answered_by"])
            for u in users + users[::-1]
        }
    assert len(answers) == len(users)  # each user answered by one variant, both times
    for user, variant in answers:
        assert variant == ("canary" if arm_of("exp-7", user, 30) == CANDIDATE else "stable")
    assert set(stable.experiments) == {"exp-7"} == set(canary.experiments)


def test_a_shadow_is_sent_a_copy_of_every_request_and_serves_none(tmp_path, predictors) -> None:  # noqa: F811
    stable, shadow = predictors
    with client_for(tmp_path, _experiment_routes(stable, shadow.url, 0, mode="shadow")) as client:
        answers = [client.post(PREDICT, json={"instances": [{"user_id": u}]}).json() for u in USERS[:40]]
        shadow.status = 500  # a failing shadow changes nothing for the users
        answers += [client.post(PREDICT, json={"instances": [{"user_id": u}]}).json() for u in USERS[:10]]
        deadline = time.monotonic() + 5
        while len(shadow.seen) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        metrics = client.get("/metrics").text
    assert all(a["answered_by"] == "stable" and a["variant"] == "stable" for a in answers)
    assert shadow.seen == ["shadow"] * 50 and stable.seen == ["stable"] * 50
    assert 'kfloop_router_requests_total{status="500",variant="shadow"} 10.0' in metrics
    assert "kfloop_router_canary_fallbacks_total{" not in metrics


def test_a_decision_records_its_experiment_and_arm_and_older_records_keep_their_form() -> None:
    plain = record_json(decision(3))
    assert "experiment" not in plain and "arm" not in plain
    record = record_json(decision(3, experiment="exp-7", arm="candidate", variant="canary"))
    assert (record["experiment"], record["arm"]) == ("exp-7", "candidate")
    with pytest.raises(ValueError, match="arm"):
        decision(3, experiment="exp-7", arm="treatment")


def test_a_shadow_decision_is_audited_but_never_an_impression() -> None:
    shadow = record_json(decision(5, variant="shadow", experiment="exp-7", arm="shadow"))
    assert [c["propensity"] for c in shadow["candidates"]] == [0.8, 0.8, 0.8]  # logged with its propensities
    assert impressions_of(shadow) == []
    served = record_json(decision(5))
    assert record_id_of(shadow) != record_id_of(served) == "decision:req-000005"  # both kept in the audit trail
    assert len(impressions_of(record_json(decision(5, variant="canary", experiment="exp-7", arm="candidate")))) == 3
