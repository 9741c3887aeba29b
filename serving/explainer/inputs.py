"""What an explanation is computed from: a decision's recorded inputs and its slate, slot by slot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

from kfloop.audit.record import CONTEXT_REF, Decision, SlotDraw
from kfloop.errors import MalformedRequest
from serving.common.request_bodies import expand_mostly

_DRAWS = get_args(SlotDraw)


@dataclass(frozen=True)
class Slot:
    """One shown slot as the decision recorded it; rank and draw are None in records made before they were."""

    item_id: str
    rank: int | None = None
    """The item's place among the candidates by score, 1 = best."""
    draw: str | None = None
    """greedy or exploration."""


def slots_of(decision: Decision) -> list[Slot]:
    """A stored decision's slate, slot 1 first."""
    return [Slot(c.item_id, c.rank, c.draw) for c in sorted(decision.candidates, key=lambda c: c.position)]


def parse_slate(value: Any) -> list[Slot] | None:
    """An explain request's slate: item ids, or objects {"item_id", "rank", "draw"} as the predictor sends a
    recorded decision's slots (serving.predictor.decisions.decision_explain_instance); None: no slate."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise MalformedRequest("slate must be a list of item ids or of {item_id, rank, draw} objects")
    return [_slot(entry, f"slate[{i}]") for i, entry in enumerate(value)]


def _slot(entry: Any, where: str) -> Slot:
    if isinstance(entry, str):
        return Slot(entry)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("item_id"), str):
        raise MalformedRequest(f"{where} must be an item id or an object with an item_id")
    unknown = set(entry) - {"item_id", "rank", "draw"}
    if unknown:
        raise MalformedRequest(f"{where} has unknown fields {sorted(unknown)}: it takes item_id, rank and draw")
    rank, draw = entry.get("rank"), entry.get("draw")
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise MalformedRequest(f"{where}.rank must be a whole number of at least 1 (1 = best score), got {rank!r}")
    if draw is not None and draw not in _DRAWS:
        raise MalformedRequest(f"{where}.draw must be one of {', '.join(_DRAWS)}, got {draw!r}")
    return Slot(entry["item_id"], rank, draw)


def slate_size(k: Any) -> int:
    """The recorded k (3 when absent, as the predictor's default)."""
    if k is None:
        return 3
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise MalformedRequest(f"inputs.k must be a whole number of at least 1, got {k!r}")
    return k


def unpack_inputs(inputs: dict[str, Any]) -> tuple[list[str], dict[str, Any], dict[str, list[Any]]]:
    """(candidates, per-request values, per-candidate columns) of inputs as the predictor records them
    (serving.predictor.decisions.decision_inputs); `items_mostly` columns are expanded."""
    if "candidates" not in inputs and CONTEXT_REF in inputs:
        raise MalformedRequest(
            f"inputs name item context {inputs[CONTEXT_REF]!r} instead of holding the candidates and their "
            "features: explain the stored decision with `kfloop audit explain REQUEST_ID`, or put the context back "
            "(the audit sink's GET /v1/decisions/{context_id})"
        )
    candidates = inputs.get("candidates")
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise MalformedRequest(
            "inputs must hold candidates (a list of item ids), user and items, as the predictor records them"
        )
    if not candidates:
        raise MalformedRequest("inputs.candidates is empty")
    user, items, mostly = (_object(inputs, name) for name in ("user", "items", "items_mostly"))
    try:
        items.update({name: expand_mostly(name, entry, len(candidates)) for name, entry in mostly.items()})
    except (TypeError, ValueError):
        raise MalformedRequest('inputs.items_mostly entries are {"value": v, "except": [[index, value]]}') from None
    return candidates, user, items


def _object(inputs: dict[str, Any], name: str) -> dict[str, Any]:
    value = inputs.get(name) or {}
    if not isinstance(value, dict):
        raise MalformedRequest(f"inputs.{name} must be an object")
    return dict(value)
