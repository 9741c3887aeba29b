"""The trained-model contract: what the trainer exports, the registry keeps and serving loads, written once.

A registered version (and the trainer's Model artifact) holds two folders:

    model/      SavedModel over the raw model inputs (one tensor [batch] per feature), tf.Transform inside:
                  serving_default(inputs)             -> score, logit  (at the serving position)
                  score_at_position(inputs, position) -> score, logit  (the training form)
                  explain_inputs(inputs)              -> x [batch, width]  (the explainer's input)
    explainer/  SavedModel serving_default(x) -> score, logit (the numeric sub-model x -> score at the serving
                position), weights.npz (kernel_i, bias_i of each dense layer) and explainer.json (an
                `ExplainerDescription`: plain enough to rebuild the sub-model in any Keras)

Plain names and pydantic only (no TensorFlow): the trainer, the registry, the predictor, the explainer and the
test model import it from either environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from kfloop.config import StrictModel
from kfloop.errors import DataIntegrityError, field_errors

# Folders and files of a registered version.
MODEL_DIR = "model"
"""The serving SavedModel."""
EXPLAINER_DIR = "explainer"
"""The explainer's numeric sub-model, its weights and its description."""
BASELINE_FILE = "baseline.json"
"""The training split's histograms of each model input (what serving compares live inputs with)."""
EXPLAINER_DESCRIPTION = "explainer.json"
EXPLAINER_WEIGHTS = "weights.npz"

# Signatures of the model SavedModel, their extra input and their outputs.
SERVING_SIGNATURE = "serving_default"
SCORE_AT_POSITION_SIGNATURE = "score_at_position"
EXPLAIN_INPUTS_SIGNATURE = "explain_inputs"
POSITION_INPUT = "position"
"""score_at_position's input besides the raw model inputs: the slot (1-based; anything else has no position)."""
SCORE, LOGIT = "score", "logit"
X = "x"
"""explain_inputs' output, and the explainer sub-model's one input."""
SCORE_OUTPUTS = (SCORE, LOGIT)

SERVED_OUTPUT = "sigmoid(tower(x) + position_bias)"


class DenseLayer(StrictModel):
    """One dense layer of the explainer's tower, in order."""

    units: int = Field(ge=1)
    """Output width."""
    activation: str
    """Keras activation name (e.g. relu, linear)."""


class InputSpan(StrictModel):
    """Which columns of x one raw feature became."""

    feature: str
    """The raw model input."""
    kind: Literal["embedding", "numeric"]
    """embedding: a categorical feature's embedding columns; numeric: one (transformed) number."""
    start: int = Field(ge=0)
    """First column."""
    end: int
    """One past the last column."""


class ExplainerDescription(StrictModel):
    """explainer.json: the tower's shape, the fixed bias, which columns of x are which feature, the baseline."""

    input_width: int = Field(ge=1)
    """Columns of x."""
    layers: list[DenseLayer] = Field(min_length=1)
    """The tower's dense layers; layer i's weights are kernel_i and bias_i in weights.npz."""
    output: str = SERVED_OUTPUT
    """What the sub-model computes, in words."""
    position_bias: float
    """The bias at the serving position, added to the tower's logit."""
    layout: list[InputSpan]
    """x's columns by feature, covering [0, input_width) without gaps or overlaps."""
    baseline: list[float]
    """The default x Integrated Gradients starts from (one value per column)."""

    @model_validator(mode="after")
    def _consistent(self) -> ExplainerDescription:
        if len(self.baseline) != self.input_width:
            raise ValueError(f"baseline has {len(self.baseline)} values for input_width {self.input_width}")
        column = 0
        for span in sorted(self.layout, key=lambda s: s.start):
            if span.start != column or span.end <= span.start:
                raise ValueError(
                    f"layout: {span.feature} spans [{span.start}, {span.end}), expected a start at {column}"
                )
            column = span.end
        if column != self.input_width:
            raise ValueError(f"layout covers {column} columns of input_width {self.input_width}")
        if self.layers[-1].units != 1:
            raise ValueError(f"the last layer must have 1 unit (the logit), has {self.layers[-1].units}")
        return self


def input_layout(categorical: list[str], numeric: list[str], embedding_dim: int) -> list[InputSpan]:
    """The layout of x both exporters use: each categorical feature's embedding, in order, then the numbers."""
    layout = [
        InputSpan(feature=name, kind="embedding", start=i * embedding_dim, end=(i + 1) * embedding_dim)
        for i, name in enumerate(categorical)
    ]
    offset = len(categorical) * embedding_dim
    layout += [
        InputSpan(feature=name, kind="numeric", start=offset + i, end=offset + i + 1) for i, name in enumerate(numeric)
    ]
    return layout


def model_signatures(serving_default: Any, score_at_position: Any, explain_inputs: Any) -> dict[str, Any]:
    """The model SavedModel's signatures, by their contract names, from three tf.functions (input signatures
    fixed: raw inputs; raw inputs and `POSITION_INPUT`; raw inputs)."""
    return {
        SERVING_SIGNATURE: serving_default.get_concrete_function(),
        SCORE_AT_POSITION_SIGNATURE: score_at_position.get_concrete_function(),
        EXPLAIN_INPUTS_SIGNATURE: explain_inputs.get_concrete_function(),
    }


def explainer_signatures(serving_default: Any) -> dict[str, Any]:
    """The explainer SavedModel's one signature, from a tf.function of x ([batch, input_width] float32)."""
    return {SERVING_SIGNATURE: serving_default.get_concrete_function()}


def write_explainer_files(
    folder: Path, description: ExplainerDescription, weights: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    """weights.npz ((kernel, bias) of each dense layer, in order) and explainer.json, beside the SavedModel."""
    if len(weights) != len(description.layers):
        raise ValueError(f"{len(weights)} weight pairs for {len(description.layers)} layers")
    arrays = {}
    for index, (kernel, bias) in enumerate(weights):
        arrays[f"kernel_{index}"], arrays[f"bias_{index}"] = kernel, bias
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / EXPLAINER_WEIGHTS, **arrays)
    (folder / EXPLAINER_DESCRIPTION).write_text(json.dumps(description.model_dump(mode="json"), indent=2) + "\n")


def read_explainer_description(folder: Path) -> ExplainerDescription:
    """explainer.json of an explainer folder; a bad one is an error naming the field."""
    path = folder / EXPLAINER_DESCRIPTION
    try:
        return ExplainerDescription.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise DataIntegrityError(f"{path} is missing: the version's explainer export is incomplete") from None
    except ValidationError as exc:
        problems = "; ".join(f"{e['field']}: {e['reason']}" for e in field_errors(exc))
        raise DataIntegrityError(f"{path}: {problems}", details=field_errors(exc)) from None


def read_explainer_weights(folder: Path, description: ExplainerDescription) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of each dense layer the description lists, from weights.npz."""
    with np.load(folder / EXPLAINER_WEIGHTS) as arrays:
        return [(arrays[f"kernel_{i}"], arrays[f"bias_{i}"]) for i in range(len(description.layers))]
