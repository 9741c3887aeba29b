"""The simulator's world and draws, without servers: users from the OBD cohorts, expected clicks equal to
`kfloop.ope.simulator`'s own numbers, the shift scenario, determinism, its config and its feedback events."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from kfloop.config import load_config
from kfloop.data import fetch_obd
from kfloop.data.import_obd import read_rows, user_id_of
from kfloop.data.obd import obd_log_csv
from kfloop.errors import ConfigError, DataIntegrityError
from kfloop.events import parse_event
from kfloop.ope import UniformRandom
from kfloop.ope.simulator import BanditSimulator
from kfloop.simulate import ClickWorld, SimulateConfig, Simulation, draw_population, plan, slate_truth
from kfloop.simulate.scenarios import FatigueShift, PreferenceReshuffle, Steady, falling_items, item_categories
from kfloop.simulate.truth import RankingTruth

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
LOGIT_SHIFT = 2.0


@pytest.fixture(scope="module")
def obd_data_dir() -> Path:
    fetch_obd(DATA_DIR, progress=lambda message: None)
    return DATA_DIR


@pytest.fixture(scope="module")
def ope_simulator(obd_data_dir: Path) -> BanditSimulator:
    return BanditSimulator.from_obd(obd_data_dir, logit_shift=LOGIT_SHIFT, seed=3)


@pytest.fixture(scope="module")
def world(obd_data_dir: Path) -> ClickWorld:
    return ClickWorld.from_obd(obd_data_dir, logit_shift=LOGIT_SHIFT, world_seed=3)


def test_cohort_ids_are_the_user_ids_the_obd_import_gives(world: ClickWorld, obd_data_dir: Path) -> None:
    imported = {
        user_id_of(row.user_features) for log in ("random", "bts") for row in read_rows(obd_log_csv(obd_data_dir, log))
    }
    assert set(world.cohort_ids) == imported
    assert len(world.cohort_ids) == len(set(world.cohort_ids)) == world.click_probability.shape[0]


def test_users_are_drawn_by_cohort_share_with_distinct_ids(world: ClickWorld) -> None:
    population = draw_population(world, 20_000, np.random.default_rng(1))
    assert len(set(population.user_ids)) == 20_000
    shares = np.bincount(population.cohort, minlength=len(world.weights)) / 20_000
    assert np.abs(shares - world.weights).max() < 0.01
    for user_id, cohort in zip(population.user_ids[:500], population.cohort[:500], strict=True):
        base = world.cohort_ids[cohort]
        assert user_id == base or (user_id.startswith(base + "-") and int(user_id[len(base) + 1 :]) >= 2)
        parse_event(  # a valid pseudonymous id for the event schema and the ranking API alike
            {
                "event_id": "e",
                "type": "click",
                "user_id": user_id,
                "item_id": "1",
                "ts": "2026-12-01T00:00:00Z",
                "consent": {"personalization": True},
            }
        )
    firsts = {user_id for user_id in population.user_ids if user_id in set(world.cohort_ids)}
    assert len(firsts) == len(set(population.cohort.tolist()))  # each drawn cohort's first user keeps its id


def test_expected_clicks_are_the_ope_simulators_own_numbers(world: ClickWorld, ope_simulator: BanditSimulator) -> None:
    np.testing.assert_array_equal(world.click_probability, ope_simulator.click_probability)
    np.testing.assert_array_equal(world.weights, ope_simulator.context_weights)
    cohort = 17
    truth = slate_truth(world, world.click_probability[cohort], ["42", "7", "0"], [1, 2, 3])
    assert truth.expected == [
        ope_simulator.click_probability[cohort, item, slot] for slot, item in enumerate((42, 7, 0))
    ]
    assert truth.unmodelled == 0
    # every item at every position, averaged by slot and weighted by cohort: a uniform slate's exact value
    items = [str(i) for i in range(world.n_items)]
    per_cohort = [
        np.mean(
            [slate_truth(world, world.click_probability[c], items, [p] * world.n_items).expected for p in (1, 2, 3)]
        )
        for c in range(len(world.cohort_ids))
    ]
    uniform = ope_simulator.true_value(UniformRandom(), ope_simulator.oracle_scores())
    assert float(np.dot(per_cohort, world.weights)) == pytest.approx(uniform, rel=1e-12)
    assert world.uniform_ctr() == pytest.approx(uniform, rel=1e-12)
    assert world.best_ctr() > 2 * world.uniform_ctr()


def test_items_and_positions_the_click_model_lacks_count_and_expect_nothing(world: ClickWorld) -> None:
    truth = slate_truth(world, world.click_probability[0], ["3", "not-an-item", "80", "07"], [1, 2, 3, 4])
    assert truth.expected[0] == world.click_probability[0, 3, 0]
    assert truth.expected[1:] == [0.0, 0.0, 0.0] and truth.unmodelled == 3


def test_the_reshuffle_redraws_appeal_for_its_share_only_and_from_its_time(world: ClickWorld) -> None:
    population = draw_population(world, 400, np.random.default_rng(2))
    steady = Steady(world, population)
    shift = PreferenceReshuffle(world, population, at_s=30.0, share=0.25, rng=np.random.default_rng(5))
    shifted = [u for u in range(len(population)) if shift.shifted(u, 30.0)]
    assert len(shifted) == 100
    for user in range(len(population)):
        before, after, cohort = shift.table(user, 29.9), shift.table(user, 30.0), steady.table(user, 0.0)
        np.testing.assert_array_equal(before, cohort)  # nobody changes before the shift
        assert not shift.shifted(user, 29.9)
        if user in shifted:
            assert not np.array_equal(after, cohort)
            # the same appeals, on other items: position effects and a random slate's CTR are kept
            np.testing.assert_allclose(np.sort(after, axis=0), np.sort(cohort, axis=0))
            assert after.mean() == pytest.approx(cohort.mean())
            assert np.mean(np.argmax(after[:, 0]) == np.argmax(cohort[:, 0])) < 1
        else:
            np.testing.assert_array_equal(after, cohort)
    assert "100 of 400 users" in shift.describe()


def test_fatigue_turns_a_share_of_users_from_the_categories_shown_most_from_its_time(
    world: ClickWorld, obd_data_dir: Path
) -> None:
    population = draw_population(world, 400, np.random.default_rng(2))
    categories = item_categories(obd_data_dir, "item_feature_1", world.n_items)
    shift = FatigueShift(
        world, population, categories, at_s=30.0, share=0.25, strength=2.0, feature="item_feature_1",
        shown_share=0.5, rng=np.random.default_rng(5),
    )  # fmt: skip
    most_shown = categories == categories[7]
    shown_items = [str(i) for i in np.flatnonzero(most_shown)]
    for _ in range(50):  # before the shift: the slates show mostly item 7's category
        shift.observe([*shown_items[:2], "0" if not most_shown[0] else "1"], 10.0)
    shift.observe([str(i) for i in range(80)] * 20, 30.0)  # after the shift: not counted
    shifted = [u for u in range(len(population)) if shift.shifted(u, 30.0)]
    assert len(shifted) == 100 and shift.outcome() == {}
    for user in range(len(population)):
        cohort = world.click_probability[population.cohort[user]]
        np.testing.assert_array_equal(shift.table(user, 29.9), cohort)
        after = shift.table(user, 30.0)
        if user not in shifted:
            np.testing.assert_array_equal(after, cohort)
            continue
        falling = np.flatnonzero(most_shown)
        np.testing.assert_allclose(odds(after[falling]) * np.exp(2.0), odds(cohort[falling]), rtol=1e-9)
        np.testing.assert_array_equal(after[~most_shown], cohort[~most_shown])
    assert shift.outcome()["falling_categories"] == [categories[7]]
    rebuilt = FatigueShift(
        world, population, categories, at_s=30.0, share=0.25, strength=2.0, feature="item_feature_1",
        shown_share=0.5, rng=np.random.default_rng(5),
    )  # fmt: skip
    rebuilt.restore(shift.outcome())  # the report rebuilds a recorded run's tables (nothing observed)
    for user in shifted[:5]:
        np.testing.assert_array_equal(rebuilt.table(user, 31.0), shift.table(user, 31.0))
    rebuilt.restore({})
    with pytest.raises(DataIntegrityError, match="which items fell"):
        rebuilt.table(shifted[0], 31.0)
    np.testing.assert_array_equal(
        rebuilt.table(shifted[0], 29.0), world.click_probability[population.cohort[shifted[0]]]
    )
    assert "100 of 400 users" in shift.describe() and "item_feature_1" in shift.describe()


def odds(p: np.ndarray) -> np.ndarray:
    return p / (1 - p)


def test_the_falling_categories_hold_half_the_shown_slots_or_else_the_popular_half(world: ClickWorld) -> None:
    categories = np.array([str(i % 4) for i in range(world.n_items)])
    shown = np.zeros(world.n_items, dtype=np.int64)
    shown[[0, 4]], shown[1], shown[2], shown[3] = 30, 25, 15, 10  # category 0: 60 of 110, 1: 25
    assert set(categories[falling_items(world, categories, shown, 0.5)]) == {"0"}
    assert set(categories[falling_items(world, categories, shown, 0.6)]) == {"0", "1"}  # 85 of 110
    shown[1] = 60  # 0: 60, 1: 60 of 145: two categories make half
    assert set(categories[falling_items(world, categories, shown, 0.5)]) == {"0", "1"}
    appeal = world.weights @ world.click_probability[:, :, 0]
    by_category = [appeal[categories == str(c)].mean() for c in range(4)]
    top_two = {str(c) for c in np.argsort(by_category)[2:]}
    assert set(categories[falling_items(world, categories, np.zeros_like(shown), 0.5)]) == top_two


def test_draws_depend_on_the_seed_and_the_request_only(world: ClickWorld) -> None:
    expected = [0.3, 0.5, 0.9]
    forward = [(plan.draw(7, i, 1000).user, plan.draw(7, i, 1000).clicks(expected)) for i in range(50)]
    backward = [(plan.draw(7, i, 1000).user, plan.draw(7, i, 1000).clicks(expected)) for i in reversed(range(50))]
    assert forward == list(reversed(backward))
    other_seed = [(plan.draw(8, i, 1000).user, plan.draw(8, i, 1000).clicks(expected)) for i in range(50)]
    assert other_seed != forward
    clicks = np.array([plan.draw(7, i, 10).clicks(expected) for i in range(4000)])
    np.testing.assert_allclose(clicks.mean(axis=0), expected, atol=0.03)


def test_the_same_config_gives_the_same_users_and_scenario(world: ClickWorld, tmp_path: Path) -> None:
    def simulation(seed: int) -> Simulation:
        config = SimulateConfig(seed=seed, requests=10, scenario="shift", users=300, out_dir=tmp_path, run_id="r1")
        return Simulation(config, world)

    first, second, third = simulation(4), simulation(4), simulation(5)
    assert first.population.user_ids == second.population.user_ids != third.population.user_ids
    assert first.scenario.chosen == second.scenario.chosen != third.scenario.chosen


def test_the_config_names_the_field_and_the_reason(tmp_path: Path) -> None:
    assert SimulateConfig().duration_s == 300.0 and SimulateConfig().planned_requests == 6000
    assert SimulateConfig(rate=10, duration_s=2.5, requests=100).planned_requests == 25
    assert SimulateConfig(rate=10, requests=7).planned_requests == 7 and SimulateConfig(requests=7).duration_s is None
    cases = [
        ({"transformer_url": "https://10.0.0.1:8080"}, "transformer_url"),
        ({"collector_url": "http://127.0.0.1:8090/v1/events"}, "collector_url"),
        ({"scenario": "earthquake"}, "known: shift, steady"),
        ({"shift": {"share": 1.5}}, "shift.share"),
        ({"rate": 0}, "rate"),
        ({"run_id": "has space"}, "run_id"),
        ({"rate": 1, "duration_s": 0.5}, "schedules no request"),
        ({"colour": "red"}, "colour"),
    ]
    for values, named in cases:
        path = tmp_path / "simulate.yaml"
        path.write_text(yaml.safe_dump(values))
        with pytest.raises(ConfigError) as error:
            load_config(SimulateConfig, path)
        assert named in error.value.message


def test_feedback_events_are_valid_and_name_the_decision() -> None:
    record = RankingTruth(
        index=3,
        request_id="sim-r1-0000003",
        user_id="obd-u-0123456789abcdef-2",
        cohort_id="obd-u-0123456789abcdef",
        shifted=False,
        ts="2026-12-06T10:00:00.000000Z",
        elapsed_s=0.15,
        latency_ms=4.0,
        model_version="v1",
        variant="canary",
        items=["5", "9", "12"],
        positions=[1, 2, 3],
        propensities=[0.9, 0.05, 0.05],
        expected_clicks=[0.1, 0.05, 0.02],
        clicks=[1, 0, 1],
    )
    draw = plan.draw(0, 3, 10)
    events = plan.feedback_events(record, draw.dwell_ms(2), datetime(2026, 12, 6, 10, 0, 1, tzinfo=UTC))
    parsed = [parse_event(e) for e in events]
    assert [(e.type, e.item_id) for e in parsed] == [("click", "5"), ("dwell", "5"), ("click", "12"), ("dwell", "12")]
    assert {e.request_id for e in parsed} == {"sim-r1-0000003"} and {e.variant for e in parsed} == {"canary"}
    assert [e.position for e in parsed if e.type == "click"] == [1, 3]
    assert len({e.event_id for e in parsed}) == 4
    assert plan.feedback_events(record, None, datetime.now(UTC))[0]["event_id"] == events[0]["event_id"]
    assert all(0 <= e.dwell_ms <= 86_400_000 for e in parsed if e.type == "dwell")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_with_its_summary_even_when_sigint_was_ignored(obd_data_dir: Path, tmp_path, stop):
    """The demo stops its simulator with Ctrl-C; started from a background job, the process inherits SIGINT
    ignored, and the run must still end and write its summary (run.json), the shift's record with it."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on: every ranking fails fast, and is counted
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    argv = [sys.executable, "-m", "kfloop", "simulate", "--transformer-url", url, "--collector-url", url]
    argv += ["--rate", "50", "--duration", "600", "--data-dir", str(obd_data_dir), "--out-dir", str(tmp_path)]
    argv += ["--run-id", "r1", "--scenario", "shift", "--shift-at", "1", "--quiet"]
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=ignore_sigint) as process:
        deadline = time.monotonic() + 120
        while not (tmp_path / "r1" / "run.json").exists():
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        time.sleep(1.0)
        process.send_signal(stop)
        assert process.wait(60) == 1  # nothing answered
    run = json.loads((tmp_path / "r1" / "run.json").read_text())
    assert run["summary"]["sent"] > 0 and run["summary"]["answered"] == 0
    assert "scenario_outcome" in run
