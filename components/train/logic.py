"""Train: the Keras ranker on the transformed training split, loss weighted by clipped inverse propensity.

Example weight = signal weight (implicit 3, explicit 1 by default) x min(1 / propensity, max_inverse_propensity);
an example without a logged propensity (explicit feedback outside a ranked slate) gets no inverse-propensity
factor. Weights are scaled to mean 1 over the training split, so the learning rate means the same whatever
the propensities. Fixed seeds and deterministic ops: the same data and parameters train the same weights.

Exports under the Model artifact the layout of a registered version (`kfloop.model_contract`): `model/` (the
SavedModel, tf.Transform graph inside, with the contract's three signatures) and `explainer/` (the numeric
sub-model x -> score, its weights and description, plain enough to rebuild in any Keras, since the serving side
runs Keras 3); plus train_info.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components import examples_io
from components.contract import LABEL, POSITION, PROPENSITY, SIGNAL
from components.train.config import TrainConfig
from kfloop import model_contract as contract

TRAIN_INFO = "train_info.json"


def inverse_propensities(frame: pd.DataFrame) -> np.ndarray:
    """1 / logged propensity; 1 where none was logged."""
    propensity = pd.to_numeric(frame[PROPENSITY], errors="coerce").to_numpy(dtype=float)
    return 1.0 / np.where(np.isnan(propensity), 1.0, propensity)


def example_weights(frame: pd.DataFrame, config: TrainConfig) -> np.ndarray:
    """Unnormalized weight of each example (see the module docstring)."""
    signal = np.where(frame[SIGNAL].to_numpy() == "explicit", config.explicit_weight, config.implicit_weight)
    return signal * np.minimum(inverse_propensities(frame), config.max_inverse_propensity)


def _setup_tf(seed: int) -> Any:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return tf


def _transformed(tf: Any, tft_layer: Any, frame: pd.DataFrame, raw_spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """The training split through the tf.Transform graph, once (not per batch and epoch)."""
    raw = {name: tf.constant(_column(frame, name, spec.dtype)[:, None]) for name, spec in raw_spec.items()}
    return {name: value.numpy() for name, value in tft_layer(raw).items()}


def _fit(
    tf: Any, model: Any, features: dict[str, np.ndarray], labels: np.ndarray, weights: np.ndarray, config: TrainConfig
) -> list[float]:
    """Mini-batch Adam on the weighted log loss; mean weighted loss per epoch.

    A plain loop in a tf.function without AutoGraph: Keras's fit() spends most of a small run converting its
    own code to graphs (40 s of 45 s here), which a loop without Python control flow on tensors does not need.
    """
    import tf_keras as keras

    optimizer = keras.optimizers.Adam(config.learning_rate)
    loss_fn = keras.losses.BinaryCrossentropy(reduction="sum")
    variables = model.trainable_variables

    @tf.function(autograph=False, reduce_retracing=True)
    def step(x: dict[str, Any], y: Any, w: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y[:, None], model(x, training=True), sample_weight=w) / tf.reduce_sum(w)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss * tf.reduce_sum(w)

    data = tf.data.Dataset.from_tensor_slices((features, labels, weights))
    data = data.shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True).batch(config.batch_size)
    losses = []
    for _ in range(config.epochs):
        total = sum(float(step(x, y, w)) for x, y, w in data)
        losses.append(total / float(weights.sum()))
    return losses


def _column(frame: pd.DataFrame, name: str, dtype: Any) -> np.ndarray:
    if dtype.name == "string":
        return frame[name].astype(str).to_numpy().astype(object)
    if dtype.is_integer:
        return frame[name].to_numpy(dtype=np.int64)
    return frame[name].to_numpy(dtype=np.float32)


def train(examples: Path, transform_dir: Path, config: TrainConfig, out_dir: Path) -> dict[str, Any]:
    """Fit the ranker and export it; returns train_info."""
    tf = _setup_tf(config.seed)
    import tensorflow_transform as tft

    from components.train.model import build_ranker
    from components.transform.logic import FEATURES_FILE

    roles = json.loads((transform_dir / FEATURES_FILE).read_text())
    output = tft.TFTransformOutput(str(transform_dir))
    raw_spec = output.raw_feature_spec()
    vocabulary_size = output.vocabulary_size_by_name(roles["vocabulary"]) + roles["oov_buckets"]
    ranker = build_ranker(roles["categorical"], roles["numeric"], vocabulary_size=vocabulary_size, config=config)

    frame = examples_io.read_split(examples, "train")
    raw = example_weights(frame, config)
    weights = (raw / raw.mean()).astype(np.float32)
    tft_layer = output.transform_features_layer()
    features = _transformed(tf, tft_layer, frame, raw_spec)
    features[POSITION] = frame[POSITION].fillna(0).to_numpy(dtype=np.int64)
    labels = frame[LABEL].to_numpy(dtype=np.float32)
    losses = _fit(tf, ranker.training_model, features, labels, weights, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    serving_bias = _bias_at(ranker, config.serving_position, config.max_position)
    _export_serving(tf, ranker, tft_layer, raw_spec, serving_bias, config, out_dir / contract.MODEL_DIR)
    baseline = _baseline_x(tf, ranker, tft_layer, frame, raw_spec)
    _export_explainer(tf, ranker, serving_bias, baseline, out_dir / contract.EXPLAINER_DIR)
    info = {
        "examples": len(frame),
        "positives": int(frame[LABEL].sum()),
        "explicit_examples": int((frame[SIGNAL] == "explicit").sum()),
        "raw_weight_mean": float(raw.mean()),
        "clipped_share": float(np.mean(inverse_propensities(frame) > config.max_inverse_propensity)),
        "loss_by_epoch": losses,
        "serving_position": config.serving_position,
        "position_bias": [float(v) for v in ranker.bias.get_weights()[0][:, 0]],
        "model_inputs": {"categorical": roles["categorical"], "numeric": roles["numeric"]},
        "parameters": config.model_dump(mode="json"),
    }
    (out_dir / TRAIN_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


def _bias_at(ranker: Any, position: int, max_position: int) -> float:
    table = ranker.bias.get_weights()[0][:, 0]
    return float(table[position if 1 <= position <= max_position else 0])


def _input_signature(tf: Any, raw_spec: dict[str, Any]) -> dict[str, Any]:
    return {name: tf.TensorSpec([None], spec.dtype, name=name) for name, spec in raw_spec.items()}


def _export_serving(
    tf: Any, ranker: Any, tft_layer: Any, raw_spec: dict[str, Any], bias: float, config: TrainConfig, path: Path
) -> None:
    module = tf.Module()
    module.tft_layer = tft_layer
    # Only the variables are tracked, not the Keras models: Keras's own SavedModel serialization of its
    # models would retrace every layer (most of this step's time); the signatures below capture them.
    module.model_variables = list(ranker.training_model.variables)
    embed, tower, bias_table = ranker.embed, ranker.tower, ranker.bias
    fixed = tf.constant(bias, tf.float32)
    signature = _input_signature(tf, raw_spec)
    max_position = config.max_position

    def x_of(features: dict[str, Any]) -> Any:
        return embed(module.tft_layer({n: tf.expand_dims(v, -1) for n, v in features.items()}))

    @tf.function(input_signature=[signature], autograph=False)
    def serving_default(features: dict[str, Any]) -> dict[str, Any]:
        logit = tower(x_of(features))[:, 0] + fixed
        return {contract.SCORE: tf.sigmoid(logit), contract.LOGIT: logit}

    position_spec = tf.TensorSpec([None], tf.int64, name=contract.POSITION_INPUT)

    @tf.function(input_signature=[signature, position_spec], autograph=False)
    def score_at_position(features: dict[str, Any], position: Any) -> dict[str, Any]:
        bucket = tf.where((position >= 1) & (position <= max_position), position, tf.zeros_like(position))
        logit = tower(x_of(features))[:, 0] + bias_table(bucket)[:, 0]
        return {contract.SCORE: tf.sigmoid(logit), contract.LOGIT: logit}

    @tf.function(input_signature=[signature], autograph=False)
    def explain_inputs(features: dict[str, Any]) -> dict[str, Any]:
        return {contract.X: x_of(features)}

    module.serving_default, module.score_at_position, module.explain_inputs = (
        serving_default,
        score_at_position,
        explain_inputs,
    )
    signatures = contract.model_signatures(serving_default, score_at_position, explain_inputs)
    tf.saved_model.save(module, str(path), signatures=signatures)


def _baseline_x(tf: Any, ranker: Any, tft_layer: Any, frame: pd.DataFrame, raw_spec: dict[str, Any]) -> np.ndarray:
    """Mean explainer input over (a sample of) the training split: Integrated Gradients' default baseline."""
    sample = frame.sample(n=min(len(frame), 2000), random_state=0)
    return ranker.embed(_transformed(tf, tft_layer, sample, raw_spec)).numpy().mean(axis=0)


def _export_explainer(tf: Any, ranker: Any, bias: float, baseline: np.ndarray, path: Path) -> None:
    module = tf.Module()
    module.model_variables = list(ranker.tower.variables)
    tower = ranker.tower
    fixed = tf.constant(bias, tf.float32)

    x_spec = tf.TensorSpec([None, ranker.input_width], tf.float32, name=contract.X)

    @tf.function(input_signature=[x_spec], autograph=False)
    def serving_default(x: Any) -> dict[str, Any]:
        logit = tower(x)[:, 0] + fixed
        return {contract.SCORE: tf.sigmoid(logit), contract.LOGIT: logit}

    module.serving_default = serving_default
    tf.saved_model.save(module, str(path), signatures=contract.explainer_signatures(serving_default))
    dense = [layer for layer in ranker.tower.layers if layer.get_weights()]
    description = contract.ExplainerDescription(
        input_width=ranker.input_width,
        layers=[
            contract.DenseLayer(units=int(layer.units), activation=layer.get_config()["activation"]) for layer in dense
        ],
        position_bias=bias,
        layout=ranker.layout,
        baseline=[float(v) for v in baseline],
    )
    contract.write_explainer_files(path, description, [tuple(layer.get_weights()) for layer in dense])
