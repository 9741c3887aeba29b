"""What happens to the users during a run: a small registry of scenarios, each a factory by name.

A scenario answers one question: this user's click probabilities ([items, positions]) at this time into the
run. Time is the schedule's (request i is at i / rate seconds), so a scenario changes at the same request in
every run with the same seed and rate. To add one: write a class with `table`, `shifted` and `describe`, and a
factory `(config, world, population, rng) -> scenario` in SCENARIOS (its parameters in its own config section).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

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

    def describe(self) -> str: ...


class Steady:
    """Every user clicks as its cohort does, all run long."""

    def __init__(self, world: ClickWorld, population: Population) -> None:
        self.world, self.population = world, population

    def table(self, user: int, elapsed_s: float) -> np.ndarray:
        return self.world.click_probability[self.population.cohort[user]]

    def shifted(self, user: int, elapsed_s: float) -> bool:
        return False

    def describe(self) -> str:
        return "steady: every user clicks as its cohort does"


class PreferenceShift(Steady):
    """At `at_s`, a share of the users re-draw their item appeal: each such user's click probabilities are its
    cohort's with the items shuffled (a seeded permutation per user). The user's position effect and the spread
    of its appeal stay, so a random slate's CTR is the same before and after; which items it likes changes, and
    a ranker that learned the old preferences does worse until it learns again. The other users keep theirs."""

    def __init__(
        self, world: ClickWorld, population: Population, *, at_s: float, share: float, rng: np.random.Generator
    ) -> None:
        super().__init__(world, population)
        self.at_s, self.share = at_s, share
        chosen = rng.choice(len(population), size=round(share * len(population)), replace=False)
        self.permutation = {int(user): rng.permutation(world.n_items) for user in np.sort(chosen)}

    def table(self, user: int, elapsed_s: float) -> np.ndarray:
        base = super().table(user, elapsed_s)
        if not self.shifted(user, elapsed_s):
            return base
        return base[self.permutation[user]]

    def shifted(self, user: int, elapsed_s: float) -> bool:
        return elapsed_s >= self.at_s and user in self.permutation

    def describe(self) -> str:
        return (
            f"shift: at {self.at_s:g} s, {len(self.permutation)} of {len(self.population)} users "
            f"({self.share:.0%}) re-draw which items they like"
        )


ScenarioFactory = Callable[["SimulateConfig", ClickWorld, Population, np.random.Generator], Scenario]

SCENARIOS: dict[str, ScenarioFactory] = {
    "steady": lambda config, world, population, rng: Steady(world, population),
    "shift": lambda config, world, population, rng: PreferenceShift(
        world, population, at_s=config.shift.at_s, share=config.shift.share, rng=rng
    ),
}


def build_scenario(
    config: SimulateConfig, world: ClickWorld, population: Population, rng: np.random.Generator
) -> Scenario:
    return SCENARIOS[config.scenario](config, world, population, rng)
