"""What happens to the users during a run: a small registry of scenarios, each a factory by name.

A scenario answers one question: this user's click probabilities ([items, positions]) at this time into the
run. Time is the schedule's (request i is at i / rate seconds), so a scenario changes at the same request in
every run with the same seed and rate. To add one: write a class with `table`, `shifted` and `describe`, and a
factory `(config, world, population, rng) -> scenario` in SCENARIOS (its parameters in its own config section).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from kfloop.errors import DataIntegrityError
from kfloop.simulate.world import ClickWorld, Population

if TYPE_CHECKING:
    from kfloop.simulate.config import SimulateConfig


class Scenario(Protocol):
    def table(self, user: int, elapsed_s: float) -> np.ndarray:
        """[items, positions] click probabilities of user number `user`, `elapsed_s` into the run."""
        ...

    def shifted(self, user: int, elapsed_s: float) -> bool:
        """Whether this user's preferences differ from its cohort's at that time."""
        ...

    def observe(self, items: Sequence[str], elapsed_s: float) -> None:
        """A slate was served to a user `elapsed_s` into the run (users may react to what they are shown)."""
        ...

    def describe(self) -> str: ...

    def outcome(self) -> dict[str, object]:
        """What the scenario did, once the run ended (kept in run.json)."""
        ...

    def restore(self, outcome: dict[str, Any]) -> None:
        """Do as a recorded run's scenario did (its `outcome()`), to rebuild its click tables afterwards."""
        ...


class Steady:
    """Every user clicks as its cohort does, all run long."""

    def __init__(self, world: ClickWorld, population: Population) -> None:
        self.world, self.population = world, population

    def table(self, user: int, elapsed_s: float) -> np.ndarray:
        return self.world.click_probability[self.population.cohort[user]]

    def shifted(self, user: int, elapsed_s: float) -> bool:
        return False

    def observe(self, items: Sequence[str], elapsed_s: float) -> None:
        return None

    def outcome(self) -> dict[str, object]:
        return {}

    def restore(self, outcome: dict[str, Any]) -> None:
        return None

    def describe(self) -> str:
        return "steady: every user clicks as its cohort does"


class ShiftOfShare(Steady):
    """The base of the shifts: from `at_s`, a seeded share of the users (`chosen`) click otherwise."""

    def __init__(
        self, world: ClickWorld, population: Population, *, at_s: float, share: float, rng: np.random.Generator
    ) -> None:
        super().__init__(world, population)
        self.at_s, self.share = at_s, share
        chosen = rng.choice(len(population), size=round(share * len(population)), replace=False)
        self.chosen = frozenset(int(user) for user in chosen)

    def shifted(self, user: int, elapsed_s: float) -> bool:
        return elapsed_s >= self.at_s and user in self.chosen

    def who(self) -> str:
        """The start of `describe`: when, and how many users."""
        return f"shift: at {self.at_s:g} s, {len(self.chosen)} of {len(self.population)} users ({self.share:.0%})"


class PreferenceReshuffle(ShiftOfShare):
    """At `at_s`, a share of the users re-draw their item appeal: each such user's click probabilities are its
    cohort's with the items shuffled (a seeded permutation per user). The user's position effect and the spread
    of its appeal stay, so a random slate's CTR is the same before and after; which items it likes changes, and
    a ranker that learned the old preferences does worse until it learns again. The other users keep theirs."""

    def __init__(
        self, world: ClickWorld, population: Population, *, at_s: float, share: float, rng: np.random.Generator
    ) -> None:
        super().__init__(world, population, at_s=at_s, share=share, rng=rng)
        self.permutation = {user: rng.permutation(world.n_items) for user in sorted(self.chosen)}

    def table(self, user: int, elapsed_s: float) -> np.ndarray:
        base = super().table(user, elapsed_s)
        if not self.shifted(user, elapsed_s):
            return base
        return base[self.permutation[user]]

    def describe(self) -> str:
        return f"{self.who()} re-draw which items they like"


class FatigueShift(ShiftOfShare):
    """At `at_s`, a share of the users tire of what they were shown most (a season ending, a fashion worn out):
    the categories of `feature` that made up most of the impressions before the shift (the fewest categories
    whose items filled at least `shown_share` of the slates' slots) lose `strength` on the click logit for
    those users; the other items keep theirs. The incumbent ranker keeps showing what these users now rarely
    click; one retrained on the new feedback can learn it, since the category is one of the model's inputs and
    every slate shows many items of each category. Before any slate was observed (a run starting at the shift),
    the categories above the median appeal fall instead."""

    def __init__(
        self,
        world: ClickWorld,
        population: Population,
        categories: np.ndarray,
        *,
        at_s: float,
        share: float,
        strength: float,
        feature: str,
        shown_share: float,
        rng: np.random.Generator,
    ) -> None:
        super().__init__(world, population, at_s=at_s, share=share, rng=rng)
        self.categories, self.feature, self.strength, self.shown_share = categories, feature, strength, shown_share
        self.shown = np.zeros(world.n_items, dtype=np.int64)
        self.falling_items: np.ndarray | None = None
        self.shifted_tables: np.ndarray | None = None
        self.unrecorded = False
        self._lock = threading.Lock()

    def observe(self, items: Sequence[str], elapsed_s: float) -> None:
        if elapsed_s >= self.at_s or self.falling_items is not None:
            return
        indices = [i for i in map(self.world.item_index, items) if i is not None]
        with self._lock:
            np.add.at(self.shown, indices, 1)

    def table(self, user: int, elapsed_s: float) -> np.ndarray:
        if not self.shifted(user, elapsed_s):
            return super().table(user, elapsed_s)
        return self._tables()[self.population.cohort[user]]

    def _tables(self) -> np.ndarray:
        if self.unrecorded:
            raise DataIntegrityError("the recorded run does not say which items fell: its shift cannot be rebuilt")
        with self._lock:
            if self.shifted_tables is None:
                self.falling_items = falling_items(self.world, self.categories, self.shown, self.shown_share)
                self.shifted_tables = demoted(self.world.click_probability, self.falling_items, self.strength)
            return self.shifted_tables

    def describe(self) -> str:
        return f"{self.who()} tire of the {self.feature} categories shown most until then"

    def outcome(self) -> dict[str, object]:
        """Which items fell (once the shift happened), for the run's record."""
        if self.falling_items is None:
            return {}
        fallen = self.categories[self.falling_items]
        items = [str(i) for i in self.falling_items.tolist()]
        return {"falling_items": items, "falling_categories": sorted(set(fallen))}

    def restore(self, outcome: dict[str, Any]) -> None:
        if "falling_items" not in outcome:  # the run ended before its shift, or its record was lost
            self.unrecorded = True
            return
        with self._lock:
            self.falling_items = np.array([int(item) for item in outcome["falling_items"]], dtype=np.intp)
            self.shifted_tables = demoted(self.world.click_probability, self.falling_items, self.strength)


def demoted(click_probability: np.ndarray, items: np.ndarray, strength: float) -> np.ndarray:
    """The click tables with `items` losing `strength` on the logit (the others unchanged, bit for bit)."""
    falling = click_probability[:, items, :]
    logits = np.log(falling) - np.log1p(-falling) - strength
    tables = click_probability.copy()
    tables[:, items, :] = 1.0 / (1.0 + np.exp(-logits))
    return tables


def falling_items(world: ClickWorld, categories: np.ndarray, shown: np.ndarray, share: float) -> np.ndarray:
    """Indices of the items of the most-shown categories: the fewest categories that hold at least `share` of the
    shown slots. With nothing shown, the categories whose mean appeal (first position, over the cohorts'
    shares) is above the median category's."""
    labels = np.unique(categories)
    if shown.sum() > 0:
        by_category = np.array([shown[categories == label].sum() for label in labels], dtype=float)
        order = np.argsort(-by_category, kind="stable")
        cumulative = np.cumsum(by_category[order]) / by_category.sum()
        falling = labels[order[: int(np.searchsorted(cumulative, share - 1e-9)) + 1]]
    else:
        appeal = world.weights @ world.click_probability[:, :, 0]
        by_category = np.array([appeal[categories == label].mean() for label in labels])
        falling = labels[by_category > np.median(by_category)]
    return np.flatnonzero(np.isin(categories, falling))


def item_categories(data_dir: Path, feature: str, n_items: int) -> np.ndarray:
    """Each item's value of an OBD item context feature, indexed by item (the random log's item_context.csv)."""
    import pandas as pd

    from kfloop.data.obd import obd_item_context_csv

    path = obd_item_context_csv(data_dir, "random")
    context = pd.read_csv(path)
    if feature not in context.columns:
        raise DataIntegrityError(f"{path} has no column {feature!r}")
    values = context.set_index("item_id")[feature].reindex(range(n_items))
    if values.isna().any():
        raise DataIntegrityError(f"{path} lacks {feature!r} for some of the {n_items} items")
    return values.astype(str).to_numpy()


ScenarioFactory = Callable[["SimulateConfig", ClickWorld, Population, np.random.Generator], Scenario]

SCENARIOS: dict[str, ScenarioFactory] = {
    "steady": lambda config, world, population, rng: Steady(world, population),
    "shift": lambda config, world, population, rng: shift_scenario(config, world, population, rng),
}


def shift_scenario(
    config: SimulateConfig, world: ClickWorld, population: Population, rng: np.random.Generator
) -> Scenario:
    shift = config.shift
    if shift.kind == "reshuffle":
        return PreferenceReshuffle(world, population, at_s=shift.at_s, share=shift.share, rng=rng)
    categories = item_categories(config.data_dir, shift.feature, world.n_items)
    return FatigueShift(
        world, population, categories,
        at_s=shift.at_s, share=shift.share, strength=shift.strength, feature=shift.feature,
        shown_share=shift.shown_share, rng=rng,
    )  # fmt: skip


def build_scenario(
    config: SimulateConfig, world: ClickWorld, population: Population, rng: np.random.Generator
) -> Scenario:
    return SCENARIOS[config.scenario](config, world, population, rng)
