"""The facts an explanation states about each shown slot, read from the decision rather than re-derived.

- Rank and top-k membership: the decision's recorded rank (1 = best score; in the top k when rank <= k, k the
  slate's length). Both parts of an explanation (Integrated Gradients and the anchor) read this one value.
- How the slot was filled: the decision's recorded draw, greedy or exploration (kfloop.ope.policies.greedy_slots).
- Older records hold neither: both are then recomputed from the recorded inputs with the same order the policy
  uses (greedy ranks of the logits, ties to the earlier candidate), and the slot says so (`source: recomputed`).
- No slate at all (the transformer's `:explain`): the top k by score are explained, every slot a greedy one
  (`source: top_k_by_score`).

Every recorded fact is checked against the recomputed scores: a decision whose inputs and version put a shown
item on the other side of the top-k edge, by more than float noise, does not reproduce and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kfloop.audit.record import EXPLORATION, GREEDY
from kfloop.errors import MalformedRequest
from kfloop.ope.policies import greedy_ranks, greedy_slots
from serving.explainer.inputs import Slot

SCORE_TIE = 1e-5
"""Scores this close are a tie: the same row scored in batches of other sizes takes other float32 kernels, and
differs in the last bits. A tie at the top-k edge is decided as the decision's order decided it."""

DECISION, RECOMPUTED, TOP_K_BY_SCORE = "decision", "recomputed", "top_k_by_score"


@dataclass(frozen=True)
class ShownItem:
    """One shown slot and what the explanation states about it."""

    row: int
    """The item's index among the candidates."""
    position: int
    rank: int
    """Place among the candidates by score, 1 = best."""
    in_top_k: bool
    draw: str
    """greedy or exploration."""
    source: str
    """decision (rank and draw as recorded), recomputed (an older record), or top_k_by_score (no decision)."""
    rival: int | None
    """The candidate the item must outscore to be in the top k: the k-th best of the others (None when every
    candidate is shown)."""


@dataclass(frozen=True)
class ShownSlate:
    k: int
    items: list[ShownItem]
    order: np.ndarray
    """Candidate indices, best score first (the policy's order)."""


def shown_slate(
    candidates: list[str], scores: np.ndarray, logits: np.ndarray, slots: list[Slot] | None, k: int, version: str
) -> ShownSlate:
    """The facts for each shown slot, k the slate's length. `slots` None: the top k by score (k as requested, at
    most the candidates)."""
    ranks = greedy_ranks(logits)
    order = np.argsort(ranks)
    source = RECOMPUTED
    if slots is None:
        slots = [Slot(candidates[i]) for i in order[: min(k, len(candidates))]]
        source = TOP_K_BY_SCORE
    rows = _rows(candidates, slots)
    k = len(rows)
    shown_ranks = [s.rank if s.rank is not None else int(ranks[row]) + 1 for s, row in zip(slots, rows, strict=True)]
    _check_ranks(shown_ranks, len(candidates))
    inferred = greedy_slots([rank - 1 for rank in shown_ranks])
    items = []
    for position, (slot, row, rank, greedy) in enumerate(zip(slots, rows, shown_ranks, inferred, strict=True), start=1):
        recorded = slot.rank is not None and slot.draw is not None
        item = ShownItem(
            row=row,
            position=position,
            rank=rank,
            in_top_k=rank <= k,
            draw=slot.draw or (GREEDY if greedy else EXPLORATION),
            source=DECISION if recorded else source,
            rival=_rival(order, row, k),
        )
        _check_item(item, k, ranks, scores, candidates, version)
        items.append(item)
    return ShownSlate(k, items, order)


def _rows(candidates: list[str], slots: list[Slot]) -> list[int]:
    index = {c: i for i, c in enumerate(candidates)}
    missing = [s.item_id for s in slots if s.item_id not in index]
    if missing:
        raise MalformedRequest(f"slate items {missing} are not among the decision's candidates")
    rows = [index[s.item_id] for s in slots]
    if len(set(rows)) != len(rows):
        raise MalformedRequest("slate lists an item twice")
    if not rows:
        raise MalformedRequest("slate is empty")
    return rows


def _check_ranks(ranks: list[int], n: int) -> None:
    if len(set(ranks)) != len(ranks):
        raise MalformedRequest("slate: two slots record the same rank")
    beyond = [r for r in ranks if r > n]
    if beyond:
        raise MalformedRequest(f"slate: rank {beyond[0]} is beyond the {n} candidates")


def _rival(order: np.ndarray, row: int, k: int) -> int | None:
    others = order[order != row]
    return int(others[k - 1]) if len(others) >= k else None


def _check_item(
    item: ShownItem, k: int, ranks: np.ndarray, scores: np.ndarray, candidates: list[str], version: str
) -> None:
    """A recorded greedy draw took the best remaining item (rank <= position); and the recomputed scores must put
    the item on the recorded side of the top-k edge, up to a tie."""
    where = f"slate[{item.position - 1}] (item {candidates[item.row]})"
    if item.draw == GREEDY and item.rank > item.position:
        raise MalformedRequest(
            f"{where}: a greedy draw takes the best remaining item, so its rank is at most its position; "
            f"the slate records rank {item.rank} at position {item.position}"
        )
    recomputed = int(ranks[item.row]) + 1
    if (recomputed <= k) == item.in_top_k:
        return
    if item.rival is not None and abs(float(scores[item.row]) - float(scores[item.rival])) <= SCORE_TIE:
        return
    raise MalformedRequest(
        f"{where}: the decision records rank {item.rank}, but model version {version} ranks it {recomputed} from "
        "the recorded inputs: they do not reproduce the decision, which cannot be explained from them"
    )
