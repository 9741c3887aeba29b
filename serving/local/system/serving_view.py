"""What the system needs to know of the serving stack's state: whether a model can be served yet (the stack's gate),
and which versions serve with what split (for `kfloop status`). Read from the serving config and state files; the
stack itself runs as its own process (`kfloop serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kfloop.config import load_config
from kfloop.deploy import read_state
from kfloop.registry import ModelRegistry

NO_MODEL = (
    "no deployable model in {registry}: train one with `kfloop pipeline run --local` (an unblessed version needs "
    "`kfloop deploy VERSION --force --reason TEXT`); serving starts by itself once one is there"
)
NOT_DEPLOYED = (
    "the serving state ({state}) names no stable version: `kfloop deploy VERSION` (`kfloop models list` shows "
    "them; train one with `kfloop pipeline run --local`); serving starts by itself once one is deployed"
)


class ServingView:
    """The serving config a serving part is given, and what it says about the state."""

    def __init__(self, config_file: Path | None) -> None:
        from serving.local.stack.config import ServingConfig

        self.config = load_config(ServingConfig, config_file)

    @property
    def state_dir(self) -> Path:
        return self.config.stack.state_dir

    def waiting_for(self) -> str | None:
        """Why the stack cannot start yet, or None. The stack seeds its state from the manifest with the latest
        deployable version the first time; after that, the state decides. Nothing is written here."""
        state = read_state(self.state_dir)
        if state is not None:
            return None if state.stable is not None else NOT_DEPLOYED.format(state=self.state_dir / "state.json")
        registry = ModelRegistry(self.config.predictor.registry_uri)
        return None if registry.deployable() else NO_MODEL.format(registry=registry.uri)


def served(state_dir: Path) -> dict[str, Any] | None:
    """The served versions and the split, from the serving state; None before the stack's first start."""
    state = read_state(state_dir)
    if state is None:
        return None
    stable = state.stable.version if state.stable else None
    canary = state.canary
    return {
        "stable": stable,
        "canary": canary.version if canary else None,
        "canary_percent": canary.percent if canary else 0,
        "stable_percent": (100 - canary.percent if canary else 100) if stable else 0,
    }
