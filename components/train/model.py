"""The ranking model (Keras 2, as tf.Transform 1.16 needs): relevance tower plus a position-bias term.

    x         = [embedding of each categorical id (one shared table) | z-scored numbers]    (post-transform)
    relevance = MLP(x) -> one logit
    training:  P(click) = sigmoid(relevance + bias[position])
    serving:   P(click) = sigmoid(relevance + bias[serving_position])

The bias absorbs how much more the top slots get clicked whatever is in them, so the relevance tower learns
what the item itself is worth; fixing the position at serving makes every candidate's score comparable
(position-debiased). `x -> score at the serving position` is also the explainer's sub-model: all numeric,
so gradients flow from the score to every input column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.contract import POSITION
from components.train.config import TrainConfig
from kfloop.model_contract import InputSpan, input_layout


@dataclass
class Ranker:
    """The parts of the model: embed (transformed features -> x), tower (x -> logit), the full training model."""

    embed: Any
    tower: Any
    bias: Any
    training_model: Any
    input_width: int
    layout: list[InputSpan]


def build_ranker(categorical: list[str], numeric: list[str], *, vocabulary_size: int, config: TrainConfig) -> Ranker:
    import tf_keras as keras

    from components.transform.preprocessing import transformed_name

    inputs = {transformed_name(n): keras.Input((), dtype="int64", name=transformed_name(n)) for n in categorical}
    inputs |= {transformed_name(n): keras.Input((), dtype="float32", name=transformed_name(n)) for n in numeric}
    table = keras.layers.Embedding(vocabulary_size, config.embedding_dim, name="categorical_embedding")
    parts = [table(inputs[transformed_name(n)]) for n in categorical]
    if numeric:
        parts.append(keras.layers.Lambda(_stack, name="numeric")([inputs[transformed_name(n)] for n in numeric]))
    x = keras.layers.Concatenate(name="x")(parts) if len(parts) > 1 else parts[0]
    embed = keras.Model(inputs, x, name="embed")
    width = len(categorical) * config.embedding_dim + len(numeric)

    x_in = keras.Input((width,), dtype="float32", name="x")
    hidden = x_in
    for index, units in enumerate(config.hidden_units):
        hidden = keras.layers.Dense(units, activation="relu", name=f"hidden_{index}")(hidden)
    logit = keras.layers.Dense(1, name="relevance")(hidden)
    tower = keras.Model(x_in, logit, name="tower")

    position = keras.Input((), dtype="int64", name=POSITION)
    bias = keras.layers.Embedding(config.max_position + 1, 1, embeddings_initializer="zeros", name="position_bias")
    clipped = keras.layers.Lambda(lambda p: _clip_position(p, config.max_position), name="clip_position")(position)
    total = keras.layers.Add(name="logit")([tower(embed(inputs)), bias(clipped)])
    probability = keras.layers.Activation("sigmoid", name="probability")(total)
    training_model = keras.Model({**inputs, POSITION: position}, probability, name="ranker")
    layout = input_layout(categorical, numeric, config.embedding_dim)
    return Ranker(embed, tower, bias, training_model, width, layout)


def _stack(values: list[Any]) -> Any:
    import tensorflow as tf

    return tf.stack(values, axis=1)


def _clip_position(position: Any, max_position: int) -> Any:
    """Positions 1..max_position keep their own bias; anything else (none, 0, beyond) shares bucket 0."""
    import tensorflow as tf

    return tf.where((position >= 1) & (position <= max_position), position, tf.zeros_like(position))
