"""Item contexts in the store: a decision's shared inputs, found by id for `audit explain` and for exports.

A decision that refers to an item context is only complete with it, so an export carries every context its
decisions refer to, in chain order among them, whatever the filter (a context has no user or model version,
and its time is when it was first recorded, often before the period pulled).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
from collections.abc import Iterable, Iterator
from typing import Any

from kfloop.audit.chain import StoredRow, entry_bytes, link_hash
from kfloop.audit.record import DECISION, ITEM_CONTEXT, ItemContext, context_ref, parse_record
from kfloop.audit.store.base import RowQuery, SqlStore
from kfloop.errors import DataIntegrityError, NotFound


def checked_record(row: StoredRow, what: str) -> dict[str, Any]:
    """A stored row's record, parsed, after checking it still matches its chain hash."""
    record = json.loads(row.record)
    if link_hash(row.prev_hash, entry_bytes(row.seq, row.received_at, record)) != row.hash:
        raise DataIntegrityError(
            f"the stored {what} (seq {row.seq}) does not match its hash; run `kfloop audit verify` — not "
            "using altered inputs"
        )
    return record


def stored_context(store: SqlStore, context_id: str) -> ItemContext:
    """The item context with this id, as stored. Refuses an altered row."""
    row = _context_row(store, context_id)
    if row is None:
        raise NotFound(f"item context {context_id} is not in the audit store")
    context = parse_record(checked_record(row, f"item context {context_id}"))
    if not isinstance(context, ItemContext):
        raise DataIntegrityError(f"the row of item context {context_id} (seq {row.seq}) holds a {context.kind}")
    return context


def rows_with_contexts(store: SqlStore, query: RowQuery) -> Iterator[StoredRow]:
    """The rows a query selects, and the item contexts their decisions refer to, in seq order.

    Two passes over the selection (bounded by the head at the start, so both see the same rows): the first
    collects the referenced ids (a handful: one per catalog state), the second merges their rows in."""
    if query.up_to_seq is None:
        query = dataclasses.replace(query, up_to_seq=store.head().seq)
    contexts = referenced_contexts(store, store.rows(query))
    last = 0
    for row in heapq.merge(contexts, store.rows(query), key=lambda row: row.seq):
        if row.seq != last:  # a context the selection holds as well
            yield row
        last = row.seq


def referenced_contexts(store: SqlStore, rows: Iterable[StoredRow]) -> list[StoredRow]:
    """The stored item contexts the decisions among `rows` refer to, in seq order (those not stored left out:
    verify names the decision that refers to a missing one)."""
    wanted = {ref for row in rows if (ref := _row_ref(row)) is not None}
    found = [row for ref in wanted if (row := _context_row(store, ref)) is not None]
    return sorted(found, key=lambda row: row.seq)


def _row_ref(row: StoredRow) -> str | None:
    if row.kind != DECISION:
        return None
    try:
        return context_ref(json.loads(row.record))
    except ValueError:  # an unreadable record is verify's to report, not the export's
        return None


def _context_row(store: SqlStore, context_id: str) -> StoredRow | None:
    return next(store.rows(RowQuery(request_id=context_id, kinds=(ITEM_CONTEXT,))), None)
