"""The trained-model contract: the explainer description is checked where it is read, and round-trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from kfloop import model_contract as contract
from kfloop.errors import DataIntegrityError


def description(**changes: Any) -> dict[str, Any]:
    """A valid explainer.json (two embedding columns of `item_id`, one number), with `changes` applied."""
    valid = {
        "input_width": 3,
        "layers": [{"units": 4, "activation": "relu"}, {"units": 1, "activation": "linear"}],
        "position_bias": 0.3,
        "layout": [
            {"feature": "item_id", "kind": "embedding", "start": 0, "end": 2},
            {"feature": "u_clicks_1d", "kind": "numeric", "start": 2, "end": 3},
        ],
        "baseline": [0.0, 0.1, 0.2],
    }
    return {**valid, **changes}


def test_input_layout_puts_each_embedding_first_then_one_column_per_number():
    layout = contract.input_layout(["item_id", "user_feature_0"], ["u_clicks_1d"], embedding_dim=4)
    assert [(s.feature, s.kind, s.start, s.end) for s in layout] == [
        ("item_id", "embedding", 0, 4),
        ("user_feature_0", "embedding", 4, 8),
        ("u_clicks_1d", "numeric", 8, 9),
    ]
    contract.ExplainerDescription.model_validate(
        description(input_width=9, layout=[s.model_dump() for s in layout], baseline=[0.0] * 9)
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"baseline": [0.0, 0.1]}, "baseline has 2 values for input_width 3"),
        ({"input_width": 4, "baseline": [0.0] * 4}, "layout covers 3 columns of input_width 4"),
        (
            {"layout": [{"feature": "item_id", "kind": "embedding", "start": 0, "end": 2}] * 2},
            "item_id spans [0, 2), expected a start at 2",
        ),
        ({"layers": [{"units": 4, "activation": "relu"}]}, "the last layer must have 1 unit"),
        ({"layout": [{"feature": "f", "kind": "onehot", "start": 0, "end": 3}]}, "layout.0.kind"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_description_that_does_not_add_up_is_refused_with_the_reason(changes: dict, reason: str):
    with pytest.raises(ValidationError) as raised:
        contract.ExplainerDescription.model_validate(description(**changes))
    assert reason in str(raised.value)


def test_explainer_files_round_trip(tmp_path: Path):
    written = contract.ExplainerDescription.model_validate(description())
    rng = np.random.default_rng(0)
    weights = [(rng.normal(size=(3, 4)), rng.normal(size=4)), (rng.normal(size=(4, 1)), rng.normal(size=1))]
    contract.write_explainer_files(tmp_path, written, weights)
    read = contract.read_explainer_description(tmp_path)
    assert read == written and read.output == contract.SERVED_OUTPUT
    for (kernel, bias), (kernel_read, bias_read) in zip(
        weights, contract.read_explainer_weights(tmp_path, read), strict=True
    ):
        np.testing.assert_array_equal(kernel, kernel_read)
        np.testing.assert_array_equal(bias, bias_read)
    with pytest.raises(ValueError, match="1 weight pairs for 2 layers"):
        contract.write_explainer_files(tmp_path, written, weights[:1])


def test_a_broken_or_missing_description_in_a_version_names_the_file_and_the_field(tmp_path: Path):
    with pytest.raises(DataIntegrityError, match=r"explainer\.json is missing"):
        contract.read_explainer_description(tmp_path)
    (tmp_path / contract.EXPLAINER_DESCRIPTION).write_text(json.dumps(description(position_bias="high")))
    with pytest.raises(DataIntegrityError, match="position_bias: ") as raised:
        contract.read_explainer_description(tmp_path)
    assert raised.value.details[0]["field"] == "position_bias"
