"""Which copy of an event id counts: the one rule every reader of the log applies.

An event id can be stored more than once: a resend that reached another collector replica, or a client's own
impression of a slot the predictor also logged (the same `imp-{request_id}-{position}`). The served record wins,
since it has the exact propensity, model version and variant; otherwise the first arrival wins.

Batch readers keep `preferred_copies` of a table; streaming readers, which see copies one by one in arrival
order, replace the copy they kept when a later one `supersedes` it; the writer stores a served copy after a
client's (`duplicate_on_arrival`), so the served one is there to win.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kfloop.events.schema import SERVING


def is_served(source: Any) -> bool:
    """Whether a row's `source` column says the serving side recorded it."""
    return source == SERVING


def supersedes(source: Any, kept_source: Any) -> bool:
    """Whether a copy that arrives later replaces the copy of its event id kept so far."""
    return is_served(source) and not is_served(kept_source)


def duplicate_on_arrival(served: bool, stored_any: bool, stored_served: bool) -> bool:
    """Whether the writer drops an arriving copy: a client copy once any copy is stored; a served copy only
    once a served copy is stored."""
    return stored_served if served else stored_any


def preferred_copies(table: pa.Table) -> pa.Table:
    """One row per event_id: the served copy if there is one, else the first arrival (ties: the event id's
    order). Needs the columns event_id, received_at and source; rows come out by arrival."""
    if table.num_rows == 0:
        return table
    served = pc.fill_null(pc.equal(table.column("source"), SERVING), False)
    rank = pc.if_else(served, 0, 1)
    ranked = table.append_column("__copy_rank", rank)
    order = pc.sort_indices(
        ranked, sort_keys=[("__copy_rank", "ascending"), ("received_at", "ascending"), ("event_id", "ascending")]
    )
    ids = table.column("event_id").take(order).to_pylist()
    seen: set[str] = set()
    keep = []
    for index, event_id in zip(order.to_pylist(), ids, strict=True):
        if event_id not in seen:
            seen.add(event_id)
            keep.append(index)
    if len(keep) == table.num_rows:
        return _by_arrival(table)
    return _by_arrival(table.take(pa.array(keep, type=pa.int64())))


def _by_arrival(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys=[("received_at", "ascending"), ("event_id", "ascending")]))
