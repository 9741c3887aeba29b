"""The OBD-fitted simulator, interval coverage against known truth, and the real OBD random-vs-bts check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kfloop.data import fetch_obd
from kfloop.ope import EpsilonGreedy, Softmax, UniformRandom, dr, expected_reward, ips, logged_propensity, snips
from kfloop.ope.obd import ObdLog, load_obd_log
from kfloop.ope.simulator import BanditSimulator, Cohorts, fit_click_model

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="session")
def obd_data_dir() -> Path:
    """The project's data dir with the OBD sample (fetched once; offline afterwards)."""
    fetch_obd(DATA_DIR, progress=lambda message: None)
    return DATA_DIR


@pytest.fixture(scope="module")
def simulator(obd_data_dir: Path) -> BanditSimulator:
    return BanditSimulator.from_obd(obd_data_dir, seed=0)


@pytest.fixture(scope="module")
def busy_simulator(obd_data_dir: Path) -> BanditSimulator:
    """CTRs raised (about 4% for a random slate, 14% for a good one) so that seeds carry enough clicks."""
    return BanditSimulator.from_obd(obd_data_dir, logit_shift=2.5, seed=0)


def test_the_simulator_keeps_the_obd_click_rate(simulator: BanditSimulator, obd_data_dir: Path) -> None:
    logged = np.concatenate([load_obd_log(obd_data_dir, log).click for log in ("random", "bts")])
    uniform = simulator.true_value(UniformRandom(), simulator.oracle_scores())
    print(f"\nsimulated uniform-random CTR {uniform:.5f}, OBD pooled CTR {logged.mean():.5f}")
    assert uniform == pytest.approx(logged.mean(), rel=0.25)
    assert (simulator.n_items, simulator.k) == (80, 3)
    assert simulator.n_contexts == len(simulator.context_features) == len(simulator.context_weights)


def test_the_synthetic_interaction_makes_personalisation_pay(simulator: BanditSimulator) -> None:
    oracle = simulator.oracle_scores()
    uniform = simulator.true_value(UniformRandom(), oracle)
    greedy = simulator.true_value(EpsilonGreedy(0.1), oracle)
    print(f"\nuniform {uniform:.5f}, epsilon-greedy on the true scores {greedy:.5f}")
    assert greedy > 1.5 * uniform


def test_generated_logs_are_consistent_and_seeded(busy_simulator: BanditSimulator) -> None:
    policy, scores = Softmax(1.0), busy_simulator.oracle_scores()
    log = busy_simulator.generate_log(policy, scores, 2_000, seed=1)
    again = busy_simulator.generate_log(policy, scores, 2_000, seed=1)
    np.testing.assert_array_equal(log.item, again.item)
    np.testing.assert_array_equal(log.click, again.click)
    assert log.n_rows == 6_000
    slates = log.item.reshape(2_000, 3)
    assert all(len(set(slate)) == 3 for slate in slates.tolist())
    table = busy_simulator.propensities(policy, scores)
    np.testing.assert_array_equal(log.pscore, table[log.context, log.item, log.position])


def test_the_true_value_is_what_a_policy_earns_on_average(busy_simulator: BanditSimulator) -> None:
    policy, scores = EpsilonGreedy(0.1), busy_simulator.oracle_scores()
    truth = busy_simulator.true_value(policy, scores)
    clicks = busy_simulator.generate_log(policy, scores, 100_000, seed=2).click
    standard_error = clicks.reshape(-1, 3).mean(axis=1).std() / np.sqrt(100_000)
    print(f"\ntrue value {truth:.5f}, observed {clicks.mean():.5f} +- {standard_error:.5f}")
    assert abs(clicks.mean() - truth) < 4 * standard_error


def noisy(table: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """A reward model that is off by logit noise of `scale` (fixed, not fitted on the evaluated log)."""
    logits = np.log(table) - np.log1p(-table) + np.random.default_rng(seed).normal(0, scale, table.shape)
    return 1 / (1 + np.exp(-logits))


def test_every_interval_covers_the_true_value_in_at_least_90_percent_of_seeds(busy_simulator) -> None:
    sim = busy_simulator
    oracle = sim.oracle_scores()
    # Logging: softmax on a noisy view of the truth; target: epsilon-greedy on the truth (overlap: softmax
    # gives every item some probability at every position).
    logging, logging_scores = Softmax(2.0), oracle + np.random.default_rng(123).normal(0, 1.0, oracle.shape)
    target = EpsilonGreedy(0.1)
    target_table = sim.propensities(target, oracle)
    truth = sim.true_value(target, oracle)
    q_table = noisy(sim.click_probability, 0.5, seed=9)
    n_seeds, covered, widths = 100, {"ips": 0, "snips": 0, "dr": 0}, {"ips": [], "snips": [], "dr": []}
    for seed in range(n_seeds):
        log = sim.generate_log(logging, logging_scores, 5_000, seed=seed)
        target_pscore = logged_propensity(target_table, log.item, log.position, log.context)
        q_hat = q_table[log.context, log.item, log.position]
        q_target = expected_reward(target_table, q_table, log.position, log.context)
        common = {"slate_id": log.decision, "seed": seed}
        estimates = {
            "ips": ips(log.click, log.pscore, target_pscore, **common),
            "snips": snips(log.click, log.pscore, target_pscore, **common),
            "dr": dr(log.click, log.pscore, target_pscore, q_hat, q_target, **common),
        }
        for name, estimate in estimates.items():
            covered[name] += estimate.covers(truth)
            widths[name].append(estimate.ci_high - estimate.ci_low)
    logging_value = sim.true_value(logging, logging_scores)
    print(f"\ntrue target value {truth:.5f} (logging policy {logging_value:.5f}), {n_seeds} seeds of 5,000 slates")
    for name in covered:
        print(f"{name:>6}: coverage {covered[name] / n_seeds:.2f}, mean interval width {np.mean(widths[name]):.5f}")
    assert all(count >= 0.9 * n_seeds for count in covered.values()), covered


@pytest.mark.parametrize(("logit_shift", "max_width_ratio"), [(2.5, 1.0), (5.5, 0.6)])
def test_dr_with_a_perfect_reward_model_is_tighter_than_ips(obd_data_dir, logit_shift, max_width_ratio) -> None:
    """A perfect reward model removes the variance of E[r | x, a], not the Bernoulli noise of the clicks,
    which the weights still multiply: the rarer the clicks, the less DR gains (at OBD's 0.4%, nothing)."""
    sim = BanditSimulator.from_obd(obd_data_dir, logit_shift=logit_shift, seed=0)
    oracle = sim.oracle_scores()
    logging_scores = oracle + np.random.default_rng(5).normal(0, 1.0, oracle.shape)
    target = EpsilonGreedy(0.1)
    target_table = sim.propensities(target, oracle)
    log = sim.generate_log(Softmax(2.0), logging_scores, 5_000, seed=11)
    target_pscore = logged_propensity(target_table, log.item, log.position, log.context)
    perfect = sim.click_probability
    by_ips = ips(log.click, log.pscore, target_pscore, slate_id=log.decision)
    by_dr = dr(
        log.click,
        log.pscore,
        target_pscore,
        perfect[log.context, log.item, log.position],
        expected_reward(target_table, perfect, log.position, log.context),
        slate_id=log.decision,
    )
    truth = sim.true_value(target, oracle)
    ratio = (by_dr.ci_high - by_dr.ci_low) / (by_ips.ci_high - by_ips.ci_low)
    print(
        f"\nCTR shift {logit_shift}: truth {truth:.4f}; IPS [{by_ips.ci_low:.4f}, {by_ips.ci_high:.4f}]; "
        f"DR [{by_dr.ci_low:.4f}, {by_dr.ci_high:.4f}]; width ratio {ratio:.2f}"
    )
    assert ratio < max_width_ratio
    assert by_dr.covers(truth)


def cross_fitted_reward_model(log: ObdLog) -> tuple[np.ndarray, np.ndarray]:
    """q_hat of each row and the uniform policy's expected q_hat at its position, from a click model fitted
    on the other half of the rows (even/odd), so that no row's own click shapes its prediction."""
    cohorts = Cohorts.from_logs([log])
    cohort = cohorts.index_of(log.user_features)
    q_hat, q_uniform = np.empty(log.n_rows), np.empty(log.n_rows)
    for fold in (0, 1):
        held_out = np.arange(log.n_rows) % 2 == fold
        train = ObdLog(
            log.name, *(getattr(log, f)[~held_out] for f in ("item", "position", "click", "pscore", "user_features"))
        )
        table = fit_click_model([train], cohorts).probabilities()
        rows = np.flatnonzero(held_out)
        q_hat[rows] = table[cohort[rows], log.item[rows], log.position[rows]]
        q_uniform[rows] = table[cohort[rows], :, log.position[rows]].mean(axis=1)
    return q_hat, q_uniform


def test_uniform_policy_value_from_the_bts_log_covers_the_ctr_of_the_random_log(obd_data_dir: Path) -> None:
    bts, random = load_obd_log(obd_data_dir, "bts"), load_obd_log(obd_data_dir, "random")
    assert np.all(random.pscore == 1 / 80)  # the random log's own propensities: 1/80 per item and position
    uniform = np.full(bts.n_rows, 1 / 80)
    q_hat, q_uniform = cross_fitted_reward_model(bts)
    estimates = [
        ips(bts.click, bts.pscore, uniform),
        snips(bts.click, bts.pscore, uniform),
        dr(bts.click, bts.pscore, uniform, q_hat, q_uniform),
    ]
    observed = ips(random.click, random.pscore, random.pscore)
    print(
        f"\nrandom log: CTR {random.ctr:.5f} ({int(random.click.sum())} clicks), its own 95% interval "
        f"[{observed.ci_low:.5f}, {observed.ci_high:.5f}]"
    )
    for estimate in estimates:
        print(
            f"{estimate.estimator:>5} from bts: {estimate.value:.5f} [{estimate.ci_low:.5f}, {estimate.ci_high:.5f}] "
            f"ESS {estimate.ess:.0f}, effective rewards {estimate.effective_rewards:.1f}, "
            f"low evidence: {estimate.reason}"
        )
    for estimate in estimates:
        assert estimate.covers(random.ctr), estimate
        assert estimate.low_evidence  # 42 clicks, most of the weight on a handful: not enough to decide
