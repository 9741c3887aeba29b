"""The durable, append-only feedback event log.

Its config is imported at once; the store and the writer when first named here: they need pyarrow and pandas
(~2 s of CPU), which a process that only reads configs that include an event log (the serving stack's, `kfloop
up`'s supervisor deciding whether serving can start) does without.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kfloop.eventlog.config import EventLogConfig

if TYPE_CHECKING:
    from kfloop.eventlog.store import read_events, sealed_files
    from kfloop.eventlog.writer import ACCEPTED, DROPPED_CONSENT, DUPLICATE, EventLog

_MODULE_OF = {
    "read_events": "store",
    "sealed_files": "store",
    "ACCEPTED": "writer",
    "DROPPED_CONSENT": "writer",
    "DUPLICATE": "writer",
    "EventLog": "writer",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ACCEPTED",
    "DROPPED_CONSENT",
    "DUPLICATE",
    "EventLog",
    "EventLogConfig",
    "read_events",
    "sealed_files",
]
