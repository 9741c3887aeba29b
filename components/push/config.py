"""Push's configuration: push has no section of its own in the pipeline config; the task is given the registry.

What the card records of the training configuration comes from the other tasks' own pipeline parameters
(see `logic.training_parameters`), so it is always what they ran with.
"""

from __future__ import annotations

from kfloop.config import StrictModel


class PushTask(StrictModel):
    """What the push task is given (its pipeline parameter, as JSON)."""

    registry_uri: str
    """The model registry every trained version is registered in."""
