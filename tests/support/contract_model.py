"""A small, untrained ranker with exactly the trainer's export contract, built in seconds with plain TensorFlow.

Tests, benchmarks and a smoke stack need a real registry version without running the training pipeline (which
lives in the other environment). This builds one with the same layout `components/train/logic.py` exports:

    model/      SavedModel, signatures over the raw features (one tensor [batch] per feature):
                  serving_default(features)            -> score, logit (at the serving position)
                  score_at_position(features, position) -> score, logit
                  explain_inputs(features)             -> x [batch, width]
    explainer/  SavedModel serving_default(x) -> score, logit; weights.npz (kernel_i, bias_i per dense layer)
                and explainer.json (input_width, layers, position_bias, layout, baseline)

The raw inputs are `item_id` plus every feature of `kfloop.features.names` (strings, int64 counts, float32
numbers, as the schema types them). The "transform" is a hash-bucket embedding for strings and log1p for counts;
the tower is seeded, with a strong positive weight on `ui_clicks_7d` so explanations have something to find.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from kfloop.features import names
from kfloop.registry import Blessing, Candidate, ModelRegistry

MODEL_DIR = "model"
EXPLAINER_DIR = "explainer"
STRONG_FEATURE = "ui_clicks_7d"
POSITION_BIAS = (0.0, 0.3, 0.15, 0.05)  # bucket 0 (no position), positions 1..3
SERVING_POSITION = 1


@dataclass(frozen=True)
class ContractSpec:
    """Shape of the contract model."""

    seed: int = 0
    embedding_dim: int = 4
    hidden_units: int = 16
    hash_buckets: int = 97
    strong_weight: float = 1.5
    """Weight of the log1p(ui_clicks_7d) column in the first few hidden units (and of those units' output)."""


def raw_inputs(features: names.FeatureSet = names.DEFAULT_FEATURES) -> dict[str, str]:
    """{raw input name: kind} in the order the model concatenates them: item_id, then every feature."""
    out = {names.ITEM_ID: names.STRING}
    out.update({name: features.kind(name) for name in features.all_features})
    return out


def _tf_dtype(tf: Any, kind: str) -> Any:
    return {names.STRING: tf.string, names.INT64: tf.int64, names.FLOAT64: tf.float32}[kind]


class _Weights:
    """Every weight of the contract model, as numpy (seeded)."""

    def __init__(self, inputs: dict[str, str], spec: ContractSpec) -> None:
        rng = np.random.default_rng(spec.seed)
        self.categorical = [n for n, k in inputs.items() if k == names.STRING]
        self.numeric = [n for n, k in inputs.items() if k != names.STRING]
        self.width = len(self.categorical) * spec.embedding_dim + len(self.numeric)
        self.embedding = rng.normal(0.0, 0.3, (spec.hash_buckets, spec.embedding_dim)).astype(np.float32)
        self.kernel_0 = rng.normal(0.0, 0.2, (self.width, spec.hidden_units)).astype(np.float32)
        self.bias_0 = np.full(spec.hidden_units, 0.05, dtype=np.float32)
        self.kernel_1 = rng.normal(0.0, 0.3, (spec.hidden_units, 1)).astype(np.float32)
        self.bias_1 = np.array([-1.0], dtype=np.float32)
        if STRONG_FEATURE in self.numeric:
            column = len(self.categorical) * spec.embedding_dim + self.numeric.index(STRONG_FEATURE)
            self.kernel_0[column, :4] = spec.strong_weight
            self.kernel_1[:4, 0] = spec.strong_weight
        self.layout = [
            {
                "feature": n,
                "kind": "embedding",
                "start": i * spec.embedding_dim,
                "end": (i + 1) * spec.embedding_dim,
            }
            for i, n in enumerate(self.categorical)
        ]
        offset = len(self.categorical) * spec.embedding_dim
        self.layout += [
            {"feature": n, "kind": "numeric", "start": offset + i, "end": offset + i + 1}
            for i, n in enumerate(self.numeric)
        ]


def build(out_dir: Path, spec: ContractSpec | None = None, features: names.FeatureSet = names.DEFAULT_FEATURES) -> Path:
    """Write `model/` and `explainer/` under out_dir; returns out_dir."""
    import tensorflow as tf

    spec = spec or ContractSpec()
    inputs = raw_inputs(features)
    weights = _Weights(inputs, spec)
    module = tf.Module()
    module.embedding = tf.Variable(weights.embedding, name="embedding")
    module.kernel_0, module.bias_0 = tf.Variable(weights.kernel_0), tf.Variable(weights.bias_0)
    module.kernel_1, module.bias_1 = tf.Variable(weights.kernel_1), tf.Variable(weights.bias_1)
    bias_table = tf.constant(POSITION_BIAS, tf.float32)
    fixed_bias = tf.constant(POSITION_BIAS[SERVING_POSITION], tf.float32)
    kinds = dict(inputs)

    def x_of(raw: dict[str, Any]) -> Any:
        parts = []
        for name in weights.categorical:
            bucket = tf.strings.to_hash_bucket_fast(tf.strings.join([name, raw[name]], "="), spec.hash_buckets)
            parts.append(tf.gather(module.embedding, bucket))
        numbers = []
        for name in weights.numeric:
            value = tf.cast(raw[name], tf.float32)
            numbers.append(tf.math.log1p(tf.maximum(value, 0.0)) if kinds[name] == names.INT64 else value)
        parts.append(tf.stack(numbers, axis=1))
        return tf.concat(parts, axis=1)

    def relevance(x: Any) -> Any:
        hidden = tf.nn.relu(tf.matmul(x, module.kernel_0) + module.bias_0)
        return (tf.matmul(hidden, module.kernel_1) + module.bias_1)[:, 0]

    signature = {name: tf.TensorSpec([None], _tf_dtype(tf, kind), name=name) for name, kind in inputs.items()}

    @tf.function(input_signature=[signature], autograph=False)
    def serving_default(raw: dict[str, Any]) -> dict[str, Any]:
        logit = relevance(x_of(raw)) + fixed_bias
        return {"score": tf.sigmoid(logit), "logit": logit}

    @tf.function(input_signature=[signature, tf.TensorSpec([None], tf.int64, name="position")], autograph=False)
    def score_at_position(raw: dict[str, Any], position: Any) -> dict[str, Any]:
        bucket = tf.where((position >= 1) & (position <= 3), position, tf.zeros_like(position))
        logit = relevance(x_of(raw)) + tf.gather(bias_table, bucket)
        return {"score": tf.sigmoid(logit), "logit": logit}

    @tf.function(input_signature=[signature], autograph=False)
    def explain_inputs(raw: dict[str, Any]) -> dict[str, Any]:
        return {"x": x_of(raw)}

    module.serving_default, module.score_at_position, module.explain_inputs = (
        serving_default,
        score_at_position,
        explain_inputs,
    )
    model_dir = out_dir / MODEL_DIR
    tf.saved_model.save(
        module,
        str(model_dir),
        signatures={
            "serving_default": serving_default.get_concrete_function(),
            "score_at_position": score_at_position.get_concrete_function(),
            "explain_inputs": explain_inputs.get_concrete_function(),
        },
    )
    baseline = explain_inputs(_default_row(tf, inputs, features))["x"].numpy()[0]
    _export_explainer(tf, module, relevance, fixed_bias, weights, baseline, out_dir / EXPLAINER_DIR)
    return out_dir


def _default_row(tf: Any, inputs: dict[str, str], features: names.FeatureSet) -> dict[str, Any]:
    """One row of cold-start values: the explainer's baseline."""
    from kfloop.features.config import AggregationConfig
    from kfloop.features.defaults import cold_start_defaults

    defaults = cold_start_defaults(AggregationConfig())
    row = {}
    for name, kind in inputs.items():
        value = defaults.get(name, names.UNKNOWN_CATEGORY)
        row[name] = tf.constant([value], dtype=_tf_dtype(tf, kind))
    return row


def _export_explainer(
    tf: Any, module: Any, relevance: Any, fixed_bias: Any, weights: _Weights, baseline: np.ndarray, path: Path
) -> None:
    explainer = tf.Module()
    explainer.kernel_0, explainer.bias_0 = module.kernel_0, module.bias_0
    explainer.kernel_1, explainer.bias_1 = module.kernel_1, module.bias_1

    @tf.function(input_signature=[tf.TensorSpec([None, weights.width], tf.float32, name="x")], autograph=False)
    def serving_default(x: Any) -> dict[str, Any]:
        logit = relevance(x) + fixed_bias
        return {"score": tf.sigmoid(logit), "logit": logit}

    explainer.serving_default = serving_default
    tf.saved_model.save(explainer, str(path), signatures={"serving_default": serving_default.get_concrete_function()})
    np.savez(
        path / "weights.npz",
        kernel_0=weights.kernel_0,
        bias_0=weights.bias_0,
        kernel_1=weights.kernel_1,
        bias_1=weights.bias_1,
    )
    description = {
        "input_width": weights.width,
        "layers": [
            {"units": int(weights.kernel_0.shape[1]), "activation": "relu"},
            {"units": 1, "activation": "linear"},
        ],
        "output": "sigmoid(tower(x) + position_bias)",
        "position_bias": float(POSITION_BIAS[SERVING_POSITION]),
        "layout": weights.layout,
        "baseline": [float(v) for v in baseline],
    }
    (path / "explainer.json").write_text(json.dumps(description, indent=2) + "\n")


def register(
    registry: ModelRegistry,
    work_dir: Path,
    spec: ContractSpec | None = None,
    *,
    created_at: datetime | None = None,
    blessed: bool = True,
) -> str:
    """Build the contract model and register it (blessed unless told otherwise); returns the version id."""
    spec = spec or ContractSpec()
    out = build(work_dir / f"contract-{spec.seed}", spec)
    candidate = Candidate(
        data_version=f"contract-data-{spec.seed}",
        schema_version="contract",
        code_version="tests.support.contract_model",
        parameters={"contract": spec.__dict__},
        blessing=Blessing(
            blessed=blessed,
            reasons=["contract model for tests and benchmarks: untrained, never for production"],
        ),
        data={},
        metrics={},
        ope={},
    )
    registered = registry.register(
        candidate, model_dir=out / MODEL_DIR, explainer_dir=out / EXPLAINER_DIR, created_at=created_at
    )
    return registered.version
