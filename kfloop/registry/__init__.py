"""The model registry: versions, their model cards, and which of them may be deployed.

Plain files only (JSON and the SavedModel folders), readable from both environments; nothing here imports
TensorFlow.
"""

from kfloop.registry.card import DEPLOYABLE, Blessing, ModelCard, State, StatusChange, VersionStatus
from kfloop.registry.registry import CARD, Candidate, ModelRegistry, Registered
from kfloop.registry.versions import fingerprint, is_version_id, version_id

__all__ = [
    "CARD",
    "DEPLOYABLE",
    "Blessing",
    "Candidate",
    "ModelCard",
    "ModelRegistry",
    "Registered",
    "State",
    "StatusChange",
    "VersionStatus",
    "fingerprint",
    "is_version_id",
    "version_id",
]
