"""The evaluator's plain parts: the off-policy rows and estimates, and the blessing rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.evaluate.blessing import decide, ope_rule, slice_rule
from components.evaluate.config import BlessingConfig, EvaluateConfig
from components.evaluate.ope import off_policy, ope_rows, reward_grid

CATALOG = ["a", "b", "c", "d"]


def logged(n_requests: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A uniformly random logging policy over CATALOG, 2 slots, clicks more likely on item a."""
    rng = np.random.default_rng(seed)
    rows, grid = [], []
    for r in range(n_requests):
        shown = rng.permutation(len(CATALOG))[:2]
        for slot, item in enumerate(shown):
            click = rng.random() < (0.3 if CATALOG[item] == "a" else 0.05)
            rows.append(
                {
                    "request_id": f"r{r:04d}",
                    "item_id": CATALOG[item],
                    "position": slot + 1,
                    "propensity": 1 / len(CATALOG),
                    "label": int(click),
                    "signal": "implicit",
                }
            )
        grid += [{"request_id": f"r{r:04d}", "item_id": item} for item in CATALOG]
    rows.append(
        {"request_id": "x", "item_id": "a", "position": None, "propensity": None, "label": 1, "signal": "explicit"}
    )
    return pd.DataFrame(rows), pd.DataFrame(grid)


def test_ope_rows_index_the_grid_and_say_what_they_leave_out():
    evaluation, grid = logged(50)
    rows, requests, catalog = ope_rows(evaluation, grid, slate_size=2)
    assert catalog == CATALOG and len(requests) == 50
    assert len(rows.reward) == 100 and rows.dropped["explicit"] == 1
    first = evaluation.iloc[0]
    assert (catalog[rows.item[0]], rows.position[0], requests[rows.context[0]]) == (
        first["item_id"],
        first["position"] - 1,
        first["request_id"],
    )


def test_a_policy_preferring_the_clicked_item_beats_the_logging_policy():
    evaluation, grid = logged(3000)
    rows, requests, _ = ope_rows(evaluation, grid, slate_size=2)
    logits = np.tile(np.array([3.0, 0.0, 0.0, 0.0]), (len(requests), 1))
    q = reward_grid(logits - 3.0, [0.0, 0.0, 0.0], serving_position=1, k=2)
    config = EvaluateConfig(slate_size=2, epsilon=0.1, bootstrap_resamples=200)
    result = off_policy(rows, logits, None, q, config)
    for name in ("ips", "snips", "dr"):
        assert result[name]["reference"]["value"] == pytest.approx(rows.reward.mean())
        assert result[name]["candidate"]["value"] > result[name]["reference"]["value"]
    same = off_policy(rows, logits, logits, q, config)
    assert same["dr"]["difference"]["value"] == pytest.approx(0.0, abs=1e-12)


def test_the_reward_grid_moves_relevance_by_each_positions_bias():
    grid = reward_grid(np.array([[0.0, 1.0]]), [0.0, 0.5, -0.5], serving_position=1, k=2)
    assert grid.shape == (1, 2, 2)
    assert grid[0, 0, 0] == pytest.approx(1 / (1 + np.exp(0.0)))
    assert grid[0, 1, 1] == pytest.approx(1 / (1 + np.exp(-(1.0 - 0.5 - 0.5))))


def estimate(value: float, low: float, high: float, *, low_evidence: bool = False) -> dict:
    return {
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "low_evidence": low_evidence,
        "reasons": ["thin"] * low_evidence,
    }


def ope_result(difference: dict) -> dict:
    return {
        "dr": {"candidate": estimate(0.01, 0.0, 0.02), "reference": estimate(0.01, 0.0, 0.02), "difference": difference}
    }


def slices(candidate_auc: float, production_auc: float | None, *, measurable: bool = True) -> dict:
    models = {"candidate": {"auc": candidate_auc, "binary_crossentropy": 0.1}}
    if production_auc is not None:
        models["production"] = {"auc": production_auc, "binary_crossentropy": 0.1}
    entry = {
        "models": models,
        "measurable": measurable,
        "reason": "" if measurable else "too small to measure: 3 positives",
    }
    return {"overall": entry, "position=1": dict(entry)}


def test_the_ope_rule_fails_a_candidate_worse_beyond_the_margin_and_abstains_on_thin_evidence():
    config = BlessingConfig(dr_margin=0.001)
    assert ope_rule(ope_result(estimate(0.0, -0.0005, 0.001)), config)[0] == "pass"
    assert ope_rule(ope_result(estimate(-0.01, -0.02, -0.005)), config)[0] == "fail"
    assert ope_rule(ope_result(estimate(-0.01, -0.02, -0.005, low_evidence=True)), config)[0] == "undecided"


def test_slice_auc_is_compared_only_with_a_production_model_and_only_where_measurable():
    config = BlessingConfig(max_slice_auc_drop=0.05)
    assert slice_rule(slices(0.7, None), False, config)[0] == "pass"
    outcome, text = slice_rule(slices(0.6, 0.7), True, config)
    assert outcome == "fail" and "position=1" in text
    outcome, text = slice_rule(slices(0.6, 0.7, measurable=False), True, config)
    assert outcome == "undecided" and "too small to measure" in text


def test_thin_evidence_blocks_or_blesses_flagged_as_configured():
    thin = ope_result(estimate(0.0, -0.1, 0.1, low_evidence=True))
    blocked = decide(thin, slices(0.7, None), reference="logging-policy", has_production=False, config=BlessingConfig())
    assert not blocked.blessed and blocked.low_evidence
    flagged = decide(
        thin,
        slices(0.7, None),
        reference="logging-policy",
        has_production=False,
        config=BlessingConfig(on_low_evidence="bless_flagged"),
    )
    assert flagged.blessed and flagged.low_evidence and "flagged" in flagged.reasons[-1]
    clear = decide(
        ope_result(estimate(0.001, 0.0, 0.002)),
        slices(0.7, 0.7),
        reference="production:v1",
        has_production=True,
        config=BlessingConfig(),
    )
    assert clear.blessed and not clear.low_evidence and clear.reference == "production:v1"
    failed = decide(
        ope_result(estimate(0.0, -0.1, 0.1, low_evidence=True)),
        slices(0.5, 0.8),
        reference="production:v1",
        has_production=True,
        config=BlessingConfig(on_low_evidence="bless_flagged"),
    )
    assert not failed.blessed, "a failed rule blocks even when another one only lacks evidence"


def served(online_logits: np.ndarray, version: str, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Slates served by epsilon-greedy over the scores serving computed (`online_logits`, [requests, items]), each
    shown item with its exact position propensity, as the predictor logs them; clicks more likely on item a."""
    from kfloop.ope import EpsilonGreedy

    policy, rng = EpsilonGreedy(0.1), np.random.default_rng(seed)
    rows, grid = [], []
    for r, logits in enumerate(online_logits):
        slate = policy.sample_slate(logits, 2, rng)
        table = policy.position_propensities(logits, 2)
        for slot, item in enumerate(slate):
            click = int(rng.random() < (0.3 if CATALOG[item] == "a" else 0.05))
            row = {"request_id": f"r{r:04d}", "item_id": CATALOG[item], "position": slot + 1, "label": click}
            rows.append({**row, "propensity": table[item, slot], "signal": "implicit", "model_version": version})
        grid += [{"request_id": f"r{r:04d}", "item_id": item} for item in CATALOG]
    frame = pd.DataFrame(rows).assign(policy="epsilon_greedy")
    return frame, pd.DataFrame(grid)


def test_a_version_judged_on_the_logs_it_served_itself_weighs_them_by_what_it_served():
    """v1 served on features that differ from the offline ones Evaluate scores (here its best item online is
    another one for half of the requests, as when context is missing online): its own rows still weigh 1, and the
    gap is reported."""
    n = 1000
    offline = np.tile(np.array([3.0, 2.0, 0.0, 0.0]), (n, 1))
    online = offline.copy()
    online[::2] = [2.0, 3.0, 0.0, 0.0]  # serving saw b first on every other request
    evaluation, grid = served(online, "v1")
    rows, _, _ = ope_rows(evaluation, grid, slate_size=2)
    q = reward_grid(offline - 3.0, [0.0, 0.0, 0.0], serving_position=1, k=2)
    config = EvaluateConfig(slate_size=2, epsilon=0.1, bootstrap_resamples=100)
    result = off_policy(rows, offline, offline, q, config, reference_version="v1")
    reference = result["ips"]["reference"]
    assert reference["ess"] == pytest.approx(len(rows.reward)) and reference["max_weight"] == pytest.approx(1.0)
    assert reference["value"] == pytest.approx(rows.reward.mean())
    assert result["dr"]["reference"]["value"] == pytest.approx(rows.reward.mean())  # on-policy: the click rate
    check = result["served_check"]
    assert check["version"] == "v1" and check["rows"] == len(rows.reward)
    assert check["ess_share"] < 0.5 and check["disagreeing"] > 0.3 * check["rows"]
    # without skew the recomputation reproduces the served propensities
    evaluation, grid = served(offline, "v1")
    rows, _, _ = ope_rows(evaluation, grid, slate_size=2)
    agreed = off_policy(rows, offline, offline, q, config, reference_version="v1")["served_check"]
    assert agreed["ess_share"] == pytest.approx(1.0) and agreed["disagreeing"] == 0


def test_rows_another_version_served_are_weighed_by_the_references_recomputed_policy():
    n = 400
    offline = np.tile(np.array([3.0, 2.0, 0.0, 0.0]), (n, 1))
    online = offline[:, ::-1].copy()  # v0 ranked the other way round
    evaluation, grid = served(online, "v0")
    rows, _, _ = ope_rows(evaluation, grid, slate_size=2)
    q = reward_grid(offline - 3.0, [0.0, 0.0, 0.0], serving_position=1, k=2)
    config = EvaluateConfig(slate_size=2, epsilon=0.1, bootstrap_resamples=100)
    result = off_policy(rows, offline, offline, q, config, reference_version="v1")
    assert result["served_check"]["rows"] == 0
    assert result["ips"]["reference"]["max_weight"] > 10  # v1's greedy picks were v0's exploration
    assert result["ips"]["difference"]["value"] == pytest.approx(0.0, abs=1e-12)
