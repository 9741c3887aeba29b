"""One model version as the explainer uses it: the serving model (raw features -> score, and -> x), the numeric
sub-model x -> score rebuilt in Keras for Alibi to differentiate, and its exported signature for fast scoring."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


def build_tower(explainer_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The explainer sub-model in Keras (whatever Keras the serving side runs), from weights.npz and
    explainer.json: dense layers, then + the fixed serving-position bias, then sigmoid."""
    import keras

    description = json.loads((explainer_dir / "explainer.json").read_text())
    weights = np.load(explainer_dir / "weights.npz")
    inputs = keras.Input((description["input_width"],), name="x")
    hidden = inputs
    for index, layer in enumerate(description["layers"]):
        dense = keras.layers.Dense(layer["units"], activation=layer["activation"], name=f"dense_{index}")
        hidden = dense(hidden)
        dense.set_weights([weights[f"kernel_{index}"], weights[f"bias_{index}"]])
    bias = float(description["position_bias"])
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
        tower_signature=_KeepAlive(exported, exported.signatures["serving_default"]),
        integrated_gradients=IntegratedGradients(
            tower, method=ig.method, n_steps=ig.n_steps, internal_batch_size=ig.internal_batch_size
        ),
        layout=description["layout"],
        baseline=np.asarray(description["baseline"], dtype=np.float32),
    )


class _KeepAlive:
    """A SavedModel signature (x -> score) as a numpy function; holds the loaded object it needs."""

    def __init__(self, loaded: Any, signature: Any) -> None:
        self._loaded, self._signature = loaded, signature

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._signature(x=x.astype(np.float32))["score"].numpy().reshape(-1)
