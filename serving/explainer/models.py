"""One model version as the explainer uses it: the serving model (raw features -> score, and -> x), the numeric
sub-model x -> score rebuilt in Keras for Alibi to differentiate, and its exported signature for fast scoring."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kfloop import model_contract as contract
from kfloop.errors import MalformedRequest
from serving.common.versions import resolve
from serving.explainer.config import ExplainerConfig


@dataclass
class VersionModels:
    version: str
    ranker: Any
    """serving.common.model_io.SavedRanker: raw features -> score, and -> x."""
    tower: Any
    """Keras model x -> score, rebuilt from the explainer export (what Alibi differentiates)."""
    tower_signature: Any
    """The exported explainer SavedModel's signature x -> score (fast scoring of anchor samples)."""
    integrated_gradients: Any
    layout: list[dict[str, Any]]
    baseline: np.ndarray


def build_tower(explainer_dir: Path) -> tuple[Any, contract.ExplainerDescription]:
    """The explainer sub-model in Keras (whatever Keras the serving side runs), from weights.npz and
    explainer.json: dense layers, then + the fixed serving-position bias, then sigmoid."""
    import keras

    description = contract.read_explainer_description(explainer_dir)
    weights = contract.read_explainer_weights(explainer_dir, description)
    inputs = keras.Input((description.input_width,), name=contract.X)
    hidden = inputs
    for index, (layer, (kernel, offset)) in enumerate(zip(description.layers, weights, strict=True)):
        dense = keras.layers.Dense(layer.units, activation=layer.activation, name=f"dense_{index}")
        hidden = dense(hidden)
        dense.set_weights([kernel, offset])
    bias = description.position_bias
    shifted = keras.layers.Rescaling(1.0, offset=bias, name="position_bias")(hidden)
    score = keras.layers.Activation("sigmoid", name="score")(shifted)
    return keras.Model(inputs, score), description


def load_version(config: ExplainerConfig, version: str | None) -> VersionModels:
    from alibi.explainers import IntegratedGradients

    from serving.common.model_io import SavedRanker, import_tensorflow

    resolved = resolve(config.registry_uri, version, None, config.cache_dir)
    if resolved.explainer_path is None:
        raise MalformedRequest(f"model version {resolved.version} has no explainer export")
    tower, description = build_tower(resolved.explainer_path)
    ig = config.integrated_gradients
    exported = import_tensorflow().saved_model.load(str(resolved.explainer_path))
    return VersionModels(
        version=resolved.version,
        ranker=SavedRanker(resolved.model_path),
        tower=tower,
        tower_signature=_KeepAlive(exported, exported.signatures[contract.SERVING_SIGNATURE]),
        integrated_gradients=IntegratedGradients(
            tower, method=ig.method, n_steps=ig.n_steps, internal_batch_size=ig.internal_batch_size
        ),
        layout=[span.model_dump() for span in description.layout],
        baseline=np.asarray(description.baseline, dtype=np.float32),
    )


class _KeepAlive:
    """A SavedModel signature (x -> score) as a numpy function; holds the loaded object it needs."""

    def __init__(self, loaded: Any, signature: Any) -> None:
        self._loaded, self._signature = loaded, signature

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._signature(**{contract.X: x.astype(np.float32)})[contract.SCORE].numpy().reshape(-1)
