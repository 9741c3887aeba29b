"""Which fields each kfloop event type has, read from the schema itself (no second list to keep in sync)."""

from __future__ import annotations

from typing import Any, get_args

from kfloop.events import Event, EventType


def _event_classes() -> tuple[Any, ...]:
    union = get_args(Event)[0]  # Annotated[Union[...], discriminator]
    return get_args(union)


def _type_of(model: Any) -> EventType:
    return EventType(get_args(model.model_fields["type"].annotation)[0])


FIELDS_OF: dict[EventType, frozenset[str]] = {
    _type_of(model): frozenset(model.model_fields) for model in _event_classes()
}
