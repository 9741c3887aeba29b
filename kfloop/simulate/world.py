"""The simulated world: the click model of `kfloop.ope.simulator` over the OBD cohorts, and the users drawn from them.

A cohort is one combination of OBD's four hashed user features; its id is the pseudonymous `user_id` that
`kfloop events import-obd` gives it (`obd-u-` + 16 hex digits), so the feature store knows it once the OBD
sample is imported. Several simulated users may share a cohort: the first keeps the cohort's id (its imported
history is its features), the others get the id plus `-2`, `-3`, ... which the feature store does not know
until their own feedback arrives: the transformer serves them the cold-start defaults, like any new user.

Items are OBD's 80 item indices, named as the import names them ("0".."79"); positions are 1-based on the wire
and index the click model's 3 positions from 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kfloop.data.import_obd import user_id_of
from kfloop.data.obd import LOGS
from kfloop.errors import DataIntegrityError
from kfloop.ope.obd import load_obd_log
from kfloop.ope.simulator import BanditSimulator, Cohorts


@dataclass(frozen=True)
class ClickWorld:
    """P(click | cohort, item, position) for every cohort, with the cohorts' user ids and shares of the logs."""

    click_probability: np.ndarray  # [cohorts, items, positions]
    cohort_ids: tuple[str, ...]
    weights: np.ndarray  # [cohorts], sums to 1

    @classmethod
    def from_obd(
        cls, data_dir: Path, *, logit_shift: float, interaction_scale: float = 0.5, world_seed: int = 0
    ) -> ClickWorld:
        """The click model `BanditSimulator.from_obd` fits on both OBD logs, its cohorts named by user id."""
        simulator = BanditSimulator.from_obd(
            data_dir, interaction_scale=interaction_scale, logit_shift=logit_shift, seed=world_seed
        )
        cohorts = Cohorts.from_logs([load_obd_log(data_dir, log) for log in LOGS])
        if not np.allclose(cohorts.weights, simulator.context_weights):
            raise DataIntegrityError("the simulator's contexts are not the OBD cohorts in order")
        ids = tuple(user_id_of(tuple(key)) for key in cohorts.keys.tolist())
        return cls(simulator.click_probability, ids, simulator.context_weights)

    @property
    def n_items(self) -> int:
        return self.click_probability.shape[1]

    @property
    def n_positions(self) -> int:
        return self.click_probability.shape[2]

    def uniform_ctr(self) -> float:
        """Expected clicks per slot of a uniformly random slate, over the cohorts' shares."""
        return float(self.click_probability.mean(axis=(1, 2)) @ self.weights)

    def best_ctr(self) -> float:
        """Expected clicks per slot when each cohort sees its best items, best first (the ceiling of a ranker)."""
        at_first = self.click_probability[:, :, 0]
        best = np.argsort(-at_first, axis=1)[:, : self.n_positions]
        rows = np.arange(len(best))[:, None]
        per_cohort = self.click_probability[rows, best, np.arange(self.n_positions)[None, :]].mean(axis=1)
        return float(per_cohort @ self.weights)

    def item_index(self, item_id: str) -> int | None:
        """The click model's index of an item id ("0".."79"), None for an item it does not know."""
        if item_id.isdigit() and int(item_id) < self.n_items and str(int(item_id)) == item_id:
            return int(item_id)
        return None


@dataclass(frozen=True)
class Population:
    """The simulated users: an id and a cohort each."""

    user_ids: tuple[str, ...]
    cohort: np.ndarray  # cohort index per user

    def __len__(self) -> int:
        return len(self.user_ids)


def draw_population(world: ClickWorld, n_users: int, rng: np.random.Generator) -> Population:
    """`n_users` users, each in a cohort drawn by the cohorts' shares; the first of a cohort keeps its id."""
    cohort = rng.choice(len(world.weights), size=n_users, p=world.weights)
    seen: dict[int, int] = {}
    ids = []
    for index in cohort.tolist():
        number = seen.get(index, 0) + 1
        seen[index] = number
        base = world.cohort_ids[index]
        ids.append(base if number == 1 else f"{base}-{number}")
    return Population(tuple(ids), cohort)


@dataclass(frozen=True)
class SlateTruth:
    """The ground truth of one served slate: each slot's click probability (0 for an item the model lacks)."""

    expected: list[float]
    unmodelled: int  # slots whose item or position the click model does not know


def slate_truth(world: ClickWorld, table: np.ndarray, items: Sequence[str], positions: Sequence[int]) -> SlateTruth:
    """Expected clicks of each slot: the user's click probability of that item at that (1-based) position."""
    expected, unmodelled = [], 0
    for item_id, position in zip(items, positions, strict=True):
        index = world.item_index(item_id)
        if index is None or not 1 <= position <= world.n_positions:
            expected.append(0.0)
            unmodelled += 1
        else:
            expected.append(float(table[index, position - 1]))
    return SlateTruth(expected, unmodelled)
