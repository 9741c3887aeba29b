"""A small, untrained ranker with exactly the trainer's export contract, built in seconds with plain TensorFlow.

Tests, benchmarks, a smoke stack and `kfloop demo` (its deliberately bad version) need a real registry version
without running the training pipeline (which lives in the other environment). This builds one in the layout
`kfloop.model_contract` describes (and `components/train/logic.py` exports): `model/` with the three signatures
over the raw features, `explainer/` with the numeric sub-model, its weights and its `ExplainerDescription`.

The raw inputs are `item_id` plus every feature of `kfloop.features.names` (strings, int64 counts, float32
numbers, as the schema types them). The "transform" is a hash-bucket embedding for strings and log1p for counts;
the tower is seeded, with a strong positive weight on `ui_clicks_7d` so explanations have something to find.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from kfloop import model_contract as contract
from kfloop.features import names
from kfloop.registry import Blessing, Candidate, ModelRegistry

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
    fail_above_candidates: int | None = None
    """A broken version, for tests of what becomes of one: scoring more than this many candidates at once fails at
    inference (an assertion in the graph, answered as a 500). Its SavedModel loads and the predictor's warm-up (one
    and two candidates) passes, as a version broken in production passed its smoke test; every real ranking, which
    scores the whole candidate set, fails. None: a working model."""
    item_bias: tuple[tuple[str, float], ...] = ()
    """(item id, logit) pairs added to the model's logit for those items (others: 0): a version that knows which
    items users like (or the reverse), for experiments where one version must be better than another. The
    explainer does not see it."""
    random_order: bool = False
    """A version whose rankings are random order: every candidate's logit is a fresh uniform draw per request (the
    tower and `item_bias` are ignored), for tests of what becomes of a candidate no better than chance. Its
    explainer is the seeded tower's, as any version's."""


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
        self.layout = contract.input_layout(self.categorical, self.numeric, spec.embedding_dim)


class _Graph:
    """The model's computations over its TensorFlow variables: raw inputs -> x -> relevance logit."""

    def __init__(self, tf: Any, weights: _Weights, spec: ContractSpec, kinds: dict[str, str]) -> None:
        self.tf, self.weights, self.spec, self.kinds = tf, weights, spec, kinds
        self.module = tf.Module()
        self.module.embedding = tf.Variable(weights.embedding, name="embedding")
        self.module.kernel_0, self.module.bias_0 = tf.Variable(weights.kernel_0), tf.Variable(weights.bias_0)
        self.module.kernel_1, self.module.bias_1 = tf.Variable(weights.kernel_1), tf.Variable(weights.bias_1)
        self.bias_table = tf.constant(POSITION_BIAS, tf.float32)
        self.module.item_bias = None
        if spec.item_bias:
            keys = tf.constant([item for item, _ in spec.item_bias])
            values = tf.constant([logit for _, logit in spec.item_bias], tf.float32)
            self.module.item_bias = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), 0.0)
        self.fixed_bias = tf.constant(POSITION_BIAS[SERVING_POSITION], tf.float32)

    def x_of(self, raw: dict[str, Any]) -> Any:
        tf, module = self.tf, self.module
        parts = []
        for name in self.weights.categorical:
            bucket = tf.strings.to_hash_bucket_fast(tf.strings.join([name, raw[name]], "="), self.spec.hash_buckets)
            parts.append(tf.gather(module.embedding, bucket))
        numbers = []
        for name in self.weights.numeric:
            value = tf.cast(raw[name], tf.float32)
            numbers.append(tf.math.log1p(tf.maximum(value, 0.0)) if self.kinds[name] == names.INT64 else value)
        parts.append(tf.stack(numbers, axis=1))
        return tf.concat(parts, axis=1)

    def item_logit(self, raw: dict[str, Any]) -> Any:
        """The spec's per-item logit (0 without one)."""
        if self.module.item_bias is None:
            return 0.0
        return self.module.item_bias.lookup(raw[names.ITEM_ID])

    def ranking_logit(self, raw: dict[str, Any]) -> Any:
        """The model's logit before the position bias: the tower plus the item's logit, or a random draw."""
        logit = self.relevance(self.x_of(raw)) + self.item_logit(raw)
        if self.spec.random_order:
            return self.tf.random.uniform(self.tf.shape(logit), -3.0, 3.0)
        return logit

    def relevance(self, x: Any) -> Any:
        tf, module = self.tf, self.module
        hidden = tf.nn.relu(tf.matmul(x, module.kernel_0) + module.bias_0)
        return (tf.matmul(hidden, module.kernel_1) + module.bias_1)[:, 0]

    def scored(self, logit: Any) -> dict[str, Any]:
        logit = self.checked(logit)
        return {contract.SCORE: self.tf.sigmoid(logit), contract.LOGIT: logit}

    def checked(self, logit: Any) -> Any:
        """The logit, behind the broken version's assertion (ContractSpec.fail_above_candidates)."""
        limit = self.spec.fail_above_candidates
        if limit is None:
            return logit
        tf = self.tf
        message = f"a deliberately broken model version: it fails on more than {limit} candidates"
        check = tf.debugging.assert_less_equal(tf.size(logit), limit, message=message)
        with tf.control_dependencies([check]):
            return tf.identity(logit)


def build(out_dir: Path, spec: ContractSpec | None = None, features: names.FeatureSet = names.DEFAULT_FEATURES) -> Path:
    """Write `model/` and `explainer/` under out_dir; returns out_dir."""
    import tensorflow as tf

    spec = spec or ContractSpec()
    inputs = raw_inputs(features)
    weights = _Weights(inputs, spec)
    graph = _Graph(tf, weights, spec, inputs)
    explain_inputs = _export_model(graph, inputs, out_dir / contract.MODEL_DIR)
    baseline = explain_inputs(_default_row(tf, inputs))[contract.X].numpy()[0]
    _export_explainer(graph, baseline, out_dir / contract.EXPLAINER_DIR)
    return out_dir


def _export_model(graph: _Graph, inputs: dict[str, str], path: Path) -> Any:
    """The model SavedModel with the contract's three signatures; returns its explain_inputs function."""
    tf, module = graph.tf, graph.module
    signature = {name: tf.TensorSpec([None], _tf_dtype(tf, kind), name=name) for name, kind in inputs.items()}
    position_spec = tf.TensorSpec([None], tf.int64, name=contract.POSITION_INPUT)

    @tf.function(input_signature=[signature], autograph=False)
    def serving_default(raw: dict[str, Any]) -> dict[str, Any]:
        return graph.scored(graph.ranking_logit(raw) + graph.fixed_bias)

    @tf.function(input_signature=[signature, position_spec], autograph=False)
    def score_at_position(raw: dict[str, Any], position: Any) -> dict[str, Any]:
        bucket = tf.where((position >= 1) & (position <= 3), position, tf.zeros_like(position))
        return graph.scored(graph.ranking_logit(raw) + tf.gather(graph.bias_table, bucket))

    @tf.function(input_signature=[signature], autograph=False)
    def explain_inputs(raw: dict[str, Any]) -> dict[str, Any]:
        return {contract.X: graph.x_of(raw)}

    module.serving_default, module.score_at_position, module.explain_inputs = (
        serving_default,
        score_at_position,
        explain_inputs,
    )
    signatures = contract.model_signatures(serving_default, score_at_position, explain_inputs)
    tf.saved_model.save(module, str(path), signatures=signatures)
    return explain_inputs


def _default_row(tf: Any, inputs: dict[str, str]) -> dict[str, Any]:
    """One row of cold-start values: the explainer's baseline."""
    from kfloop.features.config import AggregationConfig
    from kfloop.features.defaults import cold_start_defaults

    defaults = cold_start_defaults(AggregationConfig())
    row = {}
    for name, kind in inputs.items():
        value = defaults.get(name, names.UNKNOWN_CATEGORY)
        row[name] = tf.constant([value], dtype=_tf_dtype(tf, kind))
    return row


def _export_explainer(graph: _Graph, baseline: np.ndarray, path: Path) -> None:
    tf, weights = graph.tf, graph.weights
    explainer = tf.Module()
    explainer.kernel_0, explainer.bias_0 = graph.module.kernel_0, graph.module.bias_0
    explainer.kernel_1, explainer.bias_1 = graph.module.kernel_1, graph.module.bias_1

    @tf.function(input_signature=[tf.TensorSpec([None, weights.width], tf.float32, name=contract.X)], autograph=False)
    def serving_default(x: Any) -> dict[str, Any]:
        return graph.scored(graph.relevance(x) + graph.fixed_bias)

    explainer.serving_default = serving_default
    tf.saved_model.save(explainer, str(path), signatures=contract.explainer_signatures(serving_default))
    description = contract.ExplainerDescription(
        input_width=weights.width,
        layers=[
            contract.DenseLayer(units=int(weights.kernel_0.shape[1]), activation="relu"),
            contract.DenseLayer(units=1, activation="linear"),
        ],
        position_bias=float(POSITION_BIAS[SERVING_POSITION]),
        layout=weights.layout,
        baseline=[float(v) for v in baseline],
    )
    layers = [(weights.kernel_0, weights.bias_0), (weights.kernel_1, weights.bias_1)]
    contract.write_explainer_files(path, description, layers)


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
        code_version="kfloop.contract_model",
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
        candidate, model_dir=out / contract.MODEL_DIR, explainer_dir=out / contract.EXPLAINER_DIR, created_at=created_at
    )
    return registered.version
