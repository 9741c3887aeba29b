"""What the never-retrained v1 would have earned on the same users at the same times, from the simulator's ground
truth: each ranking's user and time give that user's click table then (the scenario, shift included); v1's slates
for that user are the ones v1 actually served it (its policy, as observed while it served; falling back to the
slates it served the user's cohort, then to all its slates). Their mean expected clicks per slot under the table of
the moment is v1's expected CTR there. Where v1 itself served the ranking, that is the ranking's own ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kfloop.simulate import plan
from kfloop.simulate.config import SimulateConfig
from kfloop.simulate.scenarios import build_scenario
from kfloop.simulate.world import ClickWorld, draw_population

TableOf = Callable[[str, float], np.ndarray]
"""(user_id, elapsed_s) -> that user's [items, positions] click probabilities at that time."""
POOL = 30
"""v1 slates kept per user (and per cohort) as its observed policy."""


def world_tables(simulate_config: dict[str, Any], outcome: dict[str, Any]) -> TableOf:
    """The click tables of a recorded simulator run, rebuilt from its config exactly as the simulator built them,
    and from what its scenario recorded of what it did (a fatigue shift: which items fell)."""
    config = SimulateConfig.model_validate(simulate_config)
    world = ClickWorld.from_obd(
        config.data_dir,
        logit_shift=config.logit_shift,
        interaction_scale=config.interaction_scale,
        world_seed=config.world_seed,
    )
    population = draw_population(world, config.users, plan.stream(config.seed, plan.POPULATION))
    scenario = build_scenario(config, world, population, plan.stream(config.seed, plan.SCENARIO))
    scenario.restore(outcome)
    index = {user_id: number for number, user_id in enumerate(population.user_ids)}
    return lambda user_id, elapsed_s: scenario.table(index[user_id], elapsed_s)


def slate_value(table: np.ndarray, items: list[str], positions: list[int]) -> float:
    """Expected clicks per slot of one slate under a click table (an item the table lacks counts 0)."""
    values = [
        float(table[int(item), position - 1]) if item.isdigit() and int(item) < table.shape[0] else 0.0
        for item, position in zip(items, positions, strict=True)
    ]
    return sum(values) / len(values) if values else 0.0


def v1_expected(rankings: list[dict[str, Any]], v1: str, table_of: TableOf) -> list[float]:
    """Per ranking, v1's expected clicks per slot on that user at that time."""
    by_user: dict[str, list[tuple[list[str], list[int]]]] = {}
    by_cohort: dict[str, list[tuple[list[str], list[int]]]] = {}
    served: list[tuple[list[str], list[int]]] = []
    for r in rankings:
        if r["model_version"] == v1 and r["items"]:
            slate = (r["items"], r["positions"])
            for pool in (by_user.setdefault(r["user_id"], []), by_cohort.setdefault(r["cohort_id"], []), served):
                if len(pool) < POOL:
                    pool.append(slate)
    out = []
    for r in rankings:
        if r["model_version"] == v1:
            out.append(sum(r["expected_clicks"]) / max(1, len(r["expected_clicks"])))
            continue
        pool = by_user.get(r["user_id"]) or by_cohort.get(r["cohort_id"]) or served
        table = table_of(r["user_id"], r["elapsed_s"])
        out.append(float(np.mean([slate_value(table, items, pos) for items, pos in pool])) if pool else 0.0)
    return out
