"""Canary deployment of model versions: the local serving state and the InferenceService patch.

from kfloop.deploy import ServingTarget, change_serving, deploy, promote, rollback
target = ServingTarget(state_dir, manifest, registry)            # cluster=ClusterTarget(...) patches it too
change = change_serving(target, "deploy", lambda s: deploy(s, registry, "v...", 10, operator="me"))
"""

from kfloop.deploy.actions import Change, NoCanary, apply_change, deploy, load_or_seed, promote, rollback
from kfloop.deploy.state import ServingState, read_manifest, read_state
from kfloop.deploy.target import ClusterTarget, ServingTarget, change_serving

__all__ = [
    "Change",
    "ClusterTarget",
    "NoCanary",
    "ServingState",
    "ServingTarget",
    "apply_change",
    "change_serving",
    "deploy",
    "load_or_seed",
    "promote",
    "read_manifest",
    "read_state",
    "rollback",
]
