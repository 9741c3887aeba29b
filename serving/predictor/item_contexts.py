"""Decisions that share their candidates and item features refer to them as one recorded item context.

A decision's inputs are mostly the catalog's item features, the same for every request until the catalog
changes. Recorded once as an item context (kfloop.audit.record.ItemContext) and named by digest in each
decision, they are encoded, fsynced, shipped, hashed and stored once instead of with every decision.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import orjson

from kfloop.audit.record import CONTEXT_FIELDS, AnyRecord, Decision, ItemContext, without_context


class ItemContexts:
    """Turns decisions into the records to spool. A context is referred to from its second decision on: the
    first is recorded whole, so a caller sending its own candidates with every request does not add a
    context record per decision. Remembers the `capacity` contexts seen last."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._known: OrderedDict[bytes, str | None] = OrderedDict()

    def records(self, decisions: Iterable[Decision]) -> list[AnyRecord]:
        out: list[AnyRecord] = []
        for decision in decisions:
            out.extend(self._records_of(decision))
        return out

    def forget(self) -> None:
        """After a failed spool append: contexts recorded in it may not have been kept, so record them again
        (a copy the sink holds already is a duplicate)."""
        self._known.clear()

    def _records_of(self, decision: Decision) -> list[AnyRecord]:
        inputs = decision.inputs
        if not all(field in inputs for field in CONTEXT_FIELDS):
            return [decision]
        try:
            key = orjson.dumps([inputs[field] for field in CONTEXT_FIELDS])  # cheap identity; the id is canonical
        except TypeError:  # beyond orjson (integers over 64 bits): recorded whole
            return [decision]
        if key not in self._known:
            self._remember(key)
            return [decision]
        self._known.move_to_end(key)
        context_id = self._known[key]
        if context_id is not None:
            return [decision.model_copy(update={"inputs": without_context(inputs, context_id)})]
        context = ItemContext.of({field: inputs[field] for field in CONTEXT_FIELDS}, decision.ts)
        self._known[key] = context.context_id
        return [context, decision.model_copy(update={"inputs": without_context(inputs, context.context_id)})]

    def _remember(self, key: bytes) -> None:
        """Seen once: no context recorded yet."""
        self._known[key] = None
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)
