"""The tf.Transform preprocessing_fn: vocabularies with OOV buckets for categorical features, scaling for numbers.

Its graph is saved with the model, so serving transforms raw features exactly as training did.

- Categorical: one joint vocabulary over every categorical feature's values, each value prefixed with its
  feature's name (`item_id=79`), so a (feature, value) pair has one id in one table; values unseen in
  training hash into `oov_buckets` buckets per feature. One vocabulary analyzer instead of one per feature:
  each analyzer is a Beam stage, and the analyze pass is most of the transform step's time.
- Numeric: counts (integer features) are log1p'd (they are heavy-tailed), then every numeric feature is
  z-scored by one element-wise analyzer over their stacked matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TRANSFORMED_SUFFIX = "_xf"
VOCABULARY = "categorical_values"
SEPARATOR = "="


def transformed_name(name: str) -> str:
    return f"{name}{TRANSFORMED_SUFFIX}"


def make_preprocessing_fn(
    categorical: list[str], numeric: list[str], integer: list[str], *, oov_buckets: int, top_k: int | None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
        import tensorflow as tf
        import tensorflow_transform as tft

        outputs = {}
        if categorical:
            prefixed = {
                name: tf.strings.join([f"{name}{SEPARATOR}", tf.reshape(inputs[name], [-1])]) for name in categorical
            }
            vocabulary = tft.vocabulary(
                tf.concat(list(prefixed.values()), axis=0), top_k=top_k, vocab_filename=VOCABULARY
            )
            for name, values in prefixed.items():
                outputs[transformed_name(name)] = tft.apply_vocabulary(
                    values, vocabulary, num_oov_buckets=oov_buckets * len(categorical)
                )
        if numeric:
            columns = []
            for name in numeric:
                values = tf.cast(tf.reshape(inputs[name], [-1]), tf.float32)
                if name in integer:
                    values = tf.math.log1p(tf.maximum(values, 0.0))
                columns.append(values)
            scaled = tft.scale_to_z_score(tf.stack(columns, axis=1), elementwise=True)
            for index, name in enumerate(numeric):
                outputs[transformed_name(name)] = scaled[:, index]
        return outputs

    return preprocessing_fn
