"""Exploration policies that fill K slots from a score vector, without replacement, and their exact propensities.

Every policy offers the same two methods, for one context (`scores` of shape [n_items]) or a batch
(`scores` of shape [batch, n_items]):

    policy.sample_slate(scores, k, rng)      -> item indices, [k] or [batch, k] (slot 0 first)
    policy.position_propensities(scores, k)  -> P, [n_items, k] or [batch, n_items, k]

`P[i, j]` is the probability that the policy puts item i at position j (0-based), the propensity the Open
Bandit Dataset logs for a shown item and the one off-policy estimators weigh by. Each column sums to 1 (some
item fills every slot) and each row to at most 1 (an item is shown at most once).

- `EpsilonGreedy(epsilon)`: each slot, with probability 1 - epsilon the best remaining item (highest score,
  ties to the lower index), else an item drawn uniformly from the remaining ones. Propensities are exact: a
  dynamic program over the greedy order (see `_greedy_rank_table`), computed once per (n_items, k, epsilon).
- `Softmax(temperature)`: Plackett-Luce sampling, each slot drawing a remaining item with probability
  proportional to exp(score / temperature). Propensities are exact for k <= 3 in O(n_items^2) per context;
  for k > 3 use `monte_carlo_position_propensities` (documented sampling error) instead.
- `UniformRandom()`: a uniformly random slate; every item has 1/n_items at every position (as the `random`
  log of the Open Bandit Dataset).

How each slot of a drawn slate was filled, for any policy: `greedy_slots(greedy_ranks(scores)[slate])`. A slot is
greedy when its draw took the best item still remaining (what a purely greedy policy would have put there after
the slots before it), else it is exploration. For epsilon-greedy that is every exploit draw (and the rare
uniform draw that lands on the best remaining item: the same item, shown for the same reason); for softmax it
is a Plackett-Luce draw that took the remaining argmax. A greedy slot's item is always among the top k by score
(before slot j only j - 1 items are taken); an exploration slot's item may be too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from math import comb
from typing import Protocol

import numpy as np

from kfloop.errors import InvalidInput

# Softmax: a gap this large (in score / temperature units) between consecutive top items means the items
# above it fill the first slots with probability 1 - O(n_items * e^-40), i.e. 1 in float64.
_CERTAIN_GAP = 40.0
_MAX_EXACT_SOFTMAX_K = 3
_PAIR_CELLS_PER_CHUNK = 250_000


class SlatePolicy(Protocol):
    """What the estimators, the simulator and serving need from an exploration policy."""

    def sample_slate(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray: ...

    def position_propensities(self, scores: np.ndarray, k: int) -> np.ndarray: ...


@dataclass(frozen=True)
class EpsilonGreedy:
    """Each slot: the best remaining item with probability 1 - epsilon, else a uniformly random remaining one."""

    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise InvalidInput(f"epsilon must be in [0, 1], got {self.epsilon}")

    def sample_slate(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        batch, single = _as_batch(scores, k)
        n_contexts, n_items = batch.shape
        rank = _greedy_ranks(batch)
        taken = np.zeros(batch.shape, dtype=bool)
        slate = np.empty((n_contexts, k), dtype=np.int64)
        rows = np.arange(n_contexts)
        for slot in range(k):
            explore = rng.random(n_contexts) < self.epsilon
            greedy = np.argmin(np.where(taken, n_items, rank), axis=1)
            uniform = np.argmax(np.where(taken, -1.0, rng.random(batch.shape)), axis=1)
            pick = np.where(explore, uniform, greedy)
            taken[rows, pick] = True
            slate[:, slot] = pick
        return slate[0] if single else slate

    def position_propensities(self, scores: np.ndarray, k: int) -> np.ndarray:
        batch, single = _as_batch(scores, k)
        by_rank = _greedy_rank_table(batch.shape[1], k, float(self.epsilon))
        propensities = by_rank[_greedy_ranks(batch)]
        return propensities[0] if single else propensities


@dataclass(frozen=True)
class Softmax:
    """Plackett-Luce: each slot draws a remaining item with probability proportional to exp(score / temperature)."""

    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise InvalidInput(f"temperature must be a positive number, got {self.temperature}")

    def sample_slate(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        batch, single = _as_batch(scores, k)
        # Gumbel top-k: the k largest of logits + Gumbel noise are a Plackett-Luce sample, in order.
        perturbed = batch / self.temperature + rng.gumbel(size=batch.shape)
        slate = np.argsort(-perturbed, axis=1, kind="stable")[:, :k]
        return slate[0] if single else slate

    def position_propensities(self, scores: np.ndarray, k: int) -> np.ndarray:
        batch, single = _as_batch(scores, k)
        if k > _MAX_EXACT_SOFTMAX_K:
            raise InvalidInput(
                f"exact softmax propensities are implemented for k <= {_MAX_EXACT_SOFTMAX_K}, got k={k}; "
                "use monte_carlo_position_propensities"
            )
        propensities = _plackett_luce_batch(batch / self.temperature, k)
        return propensities[0] if single else propensities


@dataclass(frozen=True)
class UniformRandom:
    """A uniformly random slate: every item has probability 1/n_items at every position."""

    def sample_slate(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        batch, single = _as_batch(scores, k)
        slate = np.argsort(rng.random(batch.shape), axis=1)[:, :k]
        return slate[0] if single else slate

    def position_propensities(self, scores: np.ndarray, k: int) -> np.ndarray:
        batch, single = _as_batch(scores, k)
        propensities = np.full((*batch.shape, k), 1.0 / batch.shape[1])
        return propensities[0] if single else propensities


def monte_carlo_position_propensities(
    policy: SlatePolicy, scores: np.ndarray, k: int, n_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Propensities of any policy estimated from `n_samples` sampled slates per context.

    Each entry has standard error sqrt(P (1 - P) / n_samples); an item never sampled gets 0, which would make
    an importance weight infinite, so prefer exact propensities wherever they exist.
    """
    batch, single = _as_batch(scores, k)
    if n_samples < 1:
        raise InvalidInput(f"n_samples must be at least 1, got {n_samples}")
    n_contexts, n_items = batch.shape
    counts = np.zeros((n_contexts, n_items, k))
    rows = np.repeat(np.arange(n_contexts), n_samples)
    slates = policy.sample_slate(np.repeat(batch, n_samples, axis=0), k, rng)
    for slot in range(k):
        np.add.at(counts[:, :, slot], (rows, slates[:, slot]), 1.0)
    propensities = counts / n_samples
    return propensities[0] if single else propensities


def _as_batch(scores: np.ndarray, k: int) -> tuple[np.ndarray, bool]:
    """Scores as a float [batch, n_items] array, checked, and whether a single vector was given."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise InvalidInput(f"scores must be [n_items] or [batch, n_items], got shape {array.shape}")
    batch = array[None, :] if array.ndim == 1 else array
    n_items = batch.shape[1]
    if not 1 <= k <= n_items:
        raise InvalidInput(f"k must be between 1 and the number of items ({n_items}), got {k}")
    if not np.all(np.isfinite(batch)):
        raise InvalidInput("scores must be finite numbers")
    return batch, array.ndim == 1


def _greedy_ranks(batch: np.ndarray) -> np.ndarray:
    """rank[b, i] = place of item i in descending score order (0 = best; ties to the lower index)."""
    order = np.argsort(-batch, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(batch.shape[1])[None, :], axis=1)
    return ranks


def greedy_ranks(scores: np.ndarray) -> np.ndarray:
    """Each item's place in the greedy order, for one context ([n_items]): 0 = the highest score, ties to the
    lower index (the order every policy here reads the scores in)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def greedy_slots(shown_ranks: Sequence[int]) -> list[bool]:
    """For each slot of one slate, given its items' greedy ranks (slot 0 first): True where the draw took the
    best item still remaining, i.e. rank r when the r better items all fill earlier slots. (A slate is a few
    slots: plain Python is quicker here than numpy's per-call overhead, on the serving path.)"""
    ranks = [int(rank) for rank in shown_ranks]
    return [sum(earlier < rank for earlier in ranks[:slot]) == rank for slot, rank in enumerate(ranks)]


@lru_cache(maxsize=64)
def _greedy_rank_table(n_items: int, k: int, epsilon: float) -> np.ndarray:
    """P[r, j]: probability that the item of greedy rank r fills slot j under epsilon-greedy.

    Before slot j, j items are taken. They are always a top block of ranks 0..m-1 (rank m not taken) plus
    c = j - m "scattered" ranks above m, and by symmetry the scattered ones are a uniformly random c-subset
    of the N = n - m - 1 ranks above m. So the state is m alone. In state m, slot j takes rank m with
    probability (1 - epsilon) + epsilon / R (R = n - j remaining items), and each rank r > m with
    probability epsilon / R * (1 - c / N) (r must still be free). Taking rank m merges the run of scattered
    ranks right above it into the block: a run of length l has probability C(N-l-1, c-l) / C(N, c).
    """
    table = np.zeros((n_items, k))
    state = {0: 1.0}  # m -> probability, before slot 0
    for slot in range(k):
        remaining = n_items - slot
        explore_each = epsilon / remaining
        next_state: dict[int, float] = {}
        for block, weight in state.items():
            scattered = slot - block
            free_above = n_items - block - 1
            take_block = (1.0 - epsilon) + explore_each
            table[block, slot] += weight * take_block
            if free_above > 0:
                table[block + 1 :, slot] += weight * explore_each * (1.0 - scattered / free_above)
            for run, p_run in _run_lengths(free_above, scattered):
                _add(next_state, block + 1 + run, weight * take_block * p_run)
            if free_above > scattered:
                _add(next_state, block, weight * explore_each * (free_above - scattered))
        state = next_state
    table.setflags(write=False)
    return table


def _run_lengths(free_above: int, scattered: int) -> list[tuple[int, float]]:
    """[(l, P(the l ranks right above the block are taken and the next is not))] for a uniform subset."""
    total = comb(free_above, scattered)
    runs = []
    for run in range(scattered + 1):
        # run == free_above: every rank above the block is taken (comb would get a negative argument).
        ways = 1 if run == free_above else comb(free_above - run - 1, scattered - run)
        if ways:
            runs.append((run, ways / total))
    return runs


def _add(state: dict[int, float], key: int, value: float) -> None:
    state[key] = state.get(key, 0.0) + value


def _plackett_luce_batch(logits: np.ndarray, k: int) -> np.ndarray:
    """Exact Plackett-Luce position propensities [batch, n_items, k] for k <= 3."""
    out = np.empty((*logits.shape, k))
    top = -np.sort(-logits, axis=1)[:, :k]
    is_close = np.all(top[:, :-1] - top[:, 1:] <= _CERTAIN_GAP, axis=1)
    close = np.flatnonzero(is_close)
    # Chunks keep the [chunk, n_items, n_items] pair matrices of the third slot small.
    chunk = max(1, _PAIR_CELLS_PER_CHUNK // logits.shape[1] ** 2)
    for start in range(0, close.size, chunk):
        rows = close[start : start + chunk]
        out[rows] = _plackett_luce_close(logits[rows], k)
    for row in np.flatnonzero(~is_close):
        out[row] = _plackett_luce_split(logits[row], k)
    return out


def _plackett_luce_split(logits: np.ndarray, k: int) -> np.ndarray:
    """One context whose top-k logits have a gap > _CERTAIN_GAP: the items above the first such gap fill
    the first slots (probability 1 - O(n e^-40)); solve the two parts separately."""
    order = np.argsort(-logits, kind="stable")
    gaps = logits[order[: k - 1]] - logits[order[1:k]]
    if k == 1 or not np.any(gaps > _CERTAIN_GAP):
        return _plackett_luce_close(logits[None, :], k)[0]
    head = int(np.argmax(gaps > _CERTAIN_GAP)) + 1
    top_items, rest_items = order[:head], order[head:]
    out = np.zeros((logits.shape[0], k))
    out[np.ix_(top_items, range(head))] = _plackett_luce_split(logits[top_items], head)
    out[np.ix_(rest_items, range(head, k))] = _plackett_luce_split(logits[rest_items], k - head)
    return out


def _plackett_luce_close(logits: np.ndarray, k: int) -> np.ndarray:
    """Plackett-Luce propensities for contexts whose top-k logits are within _CERTAIN_GAP of each other.

    Works in descending-probability order so that every "mass of the items left" is a sum, never a
    difference that could cancel (1 - p_a - p_b is not computed as such).
    """
    n_contexts, n_items = logits.shape
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    order = np.argsort(-p, axis=1, kind="stable")
    ps = np.take_along_axis(p, order, axis=1)
    zeros = np.zeros((n_contexts, 1))
    suffix = np.concatenate([np.cumsum(ps[:, ::-1], axis=1)[:, ::-1], zeros], axis=1)  # sum of ps[t >= i]
    prefix = np.concatenate([zeros, np.cumsum(ps, axis=1)[:, :-1]], axis=1)  # sum of ps[t < i]
    left_after_one = prefix + suffix[:, 1:]  # mass of all items but i
    sorted_out = np.empty((n_contexts, n_items, k))
    sorted_out[:, :, 0] = ps
    if k >= 2:
        second = ps / left_after_one  # P(b second | a first) / p_b, indexed by a
        sorted_out[:, :, 1] = ps * _sum_except_each(second)
    if k >= 3:
        sorted_out[:, :, 2] = ps * _third_slot_sum(ps, prefix, suffix, left_after_one)
    propensities = np.empty_like(sorted_out)
    np.put_along_axis(propensities, order[:, :, None], sorted_out, axis=1)
    return np.clip(propensities, 0.0, 1.0)


def _sum_except_each(values: np.ndarray) -> np.ndarray:
    """out[b, i] = sum over t != i of values[b, t], by prefix + suffix sums (no cancellation)."""
    zeros = np.zeros((values.shape[0], 1))
    before = np.concatenate([zeros, np.cumsum(values, axis=1)[:, :-1]], axis=1)
    after = np.concatenate([np.cumsum(values[:, ::-1], axis=1)[:, ::-1][:, 1:], zeros], axis=1)
    return before + after


def _third_slot_sum(ps: np.ndarray, prefix: np.ndarray, suffix: np.ndarray, left_after_one: np.ndarray) -> np.ndarray:
    """out[b, i] = sum over ordered pairs (a, c) not containing i of p_a p_c / (left(a) left(a, c)).

    In descending order, left(a, c) = left(lo) - p_hi for the sorted places lo < hi of a and c: the result
    is at least half of left(lo) (p_hi <= p_0, and p_hi <= p_1 when lo = 0) except for the pair of the two
    most probable items, whose left is suffix[2] directly. A pair term can be huge only when it involves
    item 0 (otherwise both denominators are at least p_0 and the term is at most 1), so the pairs touching
    item 0 are summed by exclusive prefix/suffix sums and only the bounded block of the others by
    total - row - column: no cancellation anywhere that could matter.
    """
    n_items = ps.shape[1]
    idx = np.arange(n_items)
    upper = (idx[:, None] < idx[None, :])[None]
    left_after_two = np.where(
        upper, left_after_one[:, :, None] - ps[:, None, :], left_after_one[:, None, :] - ps[:, :, None]
    )
    left_after_two[:, 0, 1] = left_after_two[:, 1, 0] = suffix[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pair = (ps / left_after_one)[:, :, None] * ps[:, None, :] / left_after_two
    pair[:, idx, idx] = 0.0
    block = pair[:, 1:, 1:]
    block_total = block.sum(axis=(1, 2))
    touching_first = _sum_except_each(pair[:, 0, :]) + _sum_except_each(pair[:, :, 0])
    out = np.empty(ps.shape)
    out[:, 0] = block_total
    out[:, 1:] = np.maximum(block_total[:, None] - block.sum(axis=2) - block.sum(axis=1), 0.0)
    out[:, 1:] += touching_first[:, 1:]
    return out
