"""Canary deployment of model versions: the local serving state and the InferenceService patch.

from kfloop.deploy import apply_change, deploy, promote, rollback
change = apply_change(state_dir, manifest, registry, lambda s: deploy(s, registry, "v...", 10, operator="me"))
"""

from kfloop.deploy.actions import Change, apply_change, deploy, load_or_seed, promote, rollback
from kfloop.deploy.state import ServingState, read_manifest, read_state

__all__ = [
    "Change",
    "ServingState",
    "apply_change",
    "deploy",
    "load_or_seed",
    "promote",
    "read_manifest",
    "read_state",
    "rollback",
]
