"""Input drift (serving/predictor/drift.py): PSI against hand-computed values, the baseline Validate writes read
and binned as np.histogram bins it, an unchanged input near 0 and a shifted one above the alert's 0.2, the
sliding window keeping the newest shown items, and a bad baseline.json named field by field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.validate.logic import _categorical_histogram, _numeric_histogram
from kfloop.errors import DataIntegrityError
from serving.predictor.drift import (
    OTHER,
    Baseline,
    CategoricalHistogram,
    DriftWindow,
    InputBinner,
    NumericHistogram,
    categorical_bins,
    numeric_bins,
    psi,
    read_baseline,
)

ALERT_THRESHOLD = 0.2  # monitoring/rules/profiles.yaml: drift_psi_threshold


@pytest.mark.parametrize(
    ("expected", "actual", "value"),
    [
        # 0.3 ln(0.8/0.5) - 0.3 ln(0.2/0.5) = 0.3 (0.470004 + 0.916291)
        ([0.5, 0.5], [0.8, 0.2], 0.415888),
        # -0.15 ln 0.4 - 0.05 ln 0.8 + 0.05 ln 1.2 + 0.15 ln 1.6 = 0.137444 + 0.011157 + 0.009116 + 0.070501
        ([0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4], 0.228218),
        # an empty baseline bin counts as 1e-4: -0.1 ln 0.8 + (0.1 - 0.0001) ln(0.1 / 0.0001)
        ([0.5, 0.5, 0.0], [0.5, 0.4, 0.1], 0.712399),
        ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5], 0.0),
    ],
)
def test_psi_equals_the_hand_computed_value(expected, actual, value):
    assert psi(np.array(expected), np.array(actual)) == pytest.approx(value, abs=1e-6)


def baseline_of(training: dict[str, pd.Series]) -> Baseline:
    """The baseline as the Validate component writes it (its own histogram functions), read back."""
    features = {
        name: _categorical_histogram(column, 50) if column.dtype == object else _numeric_histogram(column, 10)
        for name, column in training.items()
    }
    rows = len(next(iter(training.values())))
    return Baseline.model_validate(
        json.loads(json.dumps({"format": "kfloop-baseline-v1", "rows": rows, "features": features}))
    )


def matrices(float_values: np.ndarray, strings: list[str]) -> dict[str, np.ndarray]:
    """Input matrices as the predictor's feed holds them: one float column, one int column, one string column."""
    n = len(float_values)
    return {
        "float": float_values.reshape(n, 1),
        "int": np.zeros((n, 1), dtype=np.int64),
        "string": np.array(strings, dtype=object).reshape(n, 1),
    }


COLUMNS = {"string": ["item_id"], "int": ["u_clicks_1h"], "float": ["u_ctr_7d"]}


def window_psi(binner: InputBinner, tensors: dict[str, np.ndarray]) -> dict[str, float]:
    n = len(tensors["float"])
    window = DriftWindow(binner.features, size=n)
    for start in range(0, n, 3):  # a slate at a time, as served
        window.add(binner.codes(tensors, list(range(start, min(start + 3, n)))))
    values = window.psi(min_samples=n)
    assert values is not None
    return values


def test_an_unchanged_input_is_near_zero_and_a_shifted_one_is_above_the_alert_threshold():
    rng = np.random.default_rng(3)
    items = [f"i{k}" for k in range(20)]
    weights = np.linspace(1, 3, 20) / np.linspace(1, 3, 20).sum()
    training = {
        "u_ctr_7d": pd.Series(rng.normal(0.05, 0.02, 20_000)),
        "item_id": pd.Series(rng.choice(items, 20_000, p=weights), dtype=object),
        "u_clicks_1h": pd.Series(np.zeros(20_000, dtype=np.int64)),
    }
    binner = InputBinner(baseline_of(training), COLUMNS)
    assert {f.name for f in binner.features} == {"u_ctr_7d", "item_id", "u_clicks_1h"}

    same = matrices(rng.normal(0.05, 0.02, 6_000), list(rng.choice(items, 6_000, p=weights)))
    unchanged = window_psi(binner, same)
    assert max(unchanged.values()) < 0.02, unchanged

    shifted = matrices(rng.normal(0.07, 0.02, 6_000), list(rng.choice(items, 6_000, p=weights[::-1])))
    shifted["int"][:] = 4  # a constant input that takes another value
    drifted = window_psi(binner, shifted)
    assert drifted["u_ctr_7d"] > ALERT_THRESHOLD and drifted["item_id"] > ALERT_THRESHOLD
    assert drifted["u_clicks_1h"] > ALERT_THRESHOLD, drifted


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=60), st.integers(2, 12))
def test_numeric_codes_are_np_histograms_bins_and_outside_values_fall_in_the_outer_bins(values, bins):
    column = pd.Series(values)
    histogram = NumericHistogram.model_validate(_numeric_histogram(column, bins))
    feature = numeric_bins("x", "float", 0, histogram)
    assert feature is not None
    edges = np.asarray(histogram.edges)
    binner = InputBinner(
        Baseline(format="kfloop-baseline-v1", rows=len(values), features={"x": histogram}),
        {"float": ["x"], "int": [], "string": []},
    )
    probes = np.array([*values, edges[0] - 1.0, edges[-1] + 1.0])
    tensors = {
        "float": probes.reshape(-1, 1),
        "int": np.zeros((len(probes), 0), np.int64),
        "string": np.zeros((len(probes), 0), object),
    }
    codes = binner.codes(tensors, np.arange(len(probes)))[:, 0]
    if edges[0] == edges[-1]:  # a constant input: below, at, above
        assert codes.tolist() == [1] * len(values) + [0, 2]
        return
    inside = np.array([np.histogram([v], bins=edges)[0].argmax() for v in values])
    assert codes[: len(values)].tolist() == inside.tolist()
    assert codes[-2] == 0 and codes[-1] == len(edges) - 2
    counts = np.bincount(codes[: len(values)], minlength=len(feature.expected)) / len(values)
    np.testing.assert_allclose(counts, feature.expected, atol=1e-9)  # the training data itself: PSI 0


def test_a_value_the_baseline_did_not_keep_is_counted_as_other():
    kept_all = CategoricalHistogram(kind="categorical", fractions={"a": 0.75, "b": 0.25})
    feature = categorical_bins("c", "string", 0, kept_all)
    assert feature is not None and feature.codes == {"a": 0, "b": 1} and feature.other == 2
    assert feature.expected.tolist() == [0.75, 0.25, 0.0]  # a bin of its own, expected 0
    top = CategoricalHistogram(kind="categorical", fractions={"a": 0.5, OTHER: 0.5})
    feature = categorical_bins("c", "string", 0, top)
    assert feature is not None and feature.codes == {"a": 0} and feature.expected.tolist() == [0.5, 0.5]
    baseline = Baseline(format="kfloop-baseline-v1", rows=4, features={"c": top})
    binner = InputBinner(baseline, {"string": ["c"], "int": [], "float": []})
    tensors = {"string": np.array([["a"], ["zz"], ["b"]], dtype=object)}
    assert binner.codes(tensors, [0, 1, 2])[:, 0].tolist() == [0, 1, 1]


def test_inputs_without_a_histogram_are_named_and_not_watched():
    histogram = NumericHistogram(kind="numeric", edges=[0.0, 1.0], fractions=[1.0])
    empty = NumericHistogram(kind="numeric", edges=[], fractions=[], missing=1.0)
    baseline = Baseline(format="kfloop-baseline-v1", rows=1, features={"x": histogram, "never_seen": empty})
    binner = InputBinner(baseline, {"string": ["item_id"], "int": ["never_seen"], "float": ["x"]})
    assert [f.name for f in binner.features] == ["x"] and binner.unwatched == ["item_id", "never_seen"]


def test_excluded_inputs_are_named_apart_and_not_watched():
    histogram = NumericHistogram(kind="numeric", edges=[0.0, 1.0], fractions=[1.0])
    category = CategoricalHistogram(kind="categorical", fractions={"a": 1.0})
    baseline = Baseline(format="kfloop-baseline-v1", rows=1, features={"x": histogram, "item_feature_1": category})
    columns = {"string": ["item_feature_1", "item_id"], "int": [], "float": ["x"]}
    binner = InputBinner(baseline, columns, frozenset({"item_feature_1", "not_an_input"}))
    assert [f.name for f in binner.features] == ["x"]
    assert binner.excluded == ["item_feature_1"] and binner.unwatched == ["item_id"]
    tensors = {
        "string": np.array([["b", "7"]], dtype=object),
        "int": np.zeros((1, 0), dtype=np.int64),
        "float": np.array([[0.5]], dtype=np.float32),
    }
    assert binner.codes(tensors, [0]).shape == (1, 1)


def test_the_window_keeps_the_newest_items_and_waits_for_its_minimum_sample():
    feature = numeric_bins("x", "float", 0, NumericHistogram(kind="numeric", edges=[0, 1, 2], fractions=[0.5, 0.5]))
    assert feature is not None
    window = DriftWindow([feature], size=10)
    window.add(np.zeros((6, 1), dtype=np.int16))
    assert window.psi(min_samples=7) is None and window.filled == 6
    assert window.psi(min_samples=6) == {"x": pytest.approx(psi(np.array([0.5, 0.5]), np.array([1.0, 0.0])))}
    window.add(np.ones((7, 1), dtype=np.int16))  # wraps: the newest 10 are 3 zeros and 7 ones
    assert window.filled == 10
    assert window.psi(min_samples=10) == {"x": pytest.approx(psi(np.array([0.5, 0.5]), np.array([0.3, 0.7])))}
    window.add(np.ones((25, 1), dtype=np.int16))  # more than the window at once: its newest 10
    assert window.psi(min_samples=10) == {"x": pytest.approx(psi(np.array([0.5, 0.5]), np.array([0.0, 1.0])))}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "is not JSON"),
        ('{"format": "v0", "rows": 1, "features": {}}', "format"),
        (
            '{"format": "kfloop-baseline-v1", "rows": 1, "features": {"x": {"kind": "numeric", "edges": [0, 1],'
            ' "fractions": [0.5, 0.5]}}}',
            "features.x.numeric: Value error, 2 fractions for 2 edges",
        ),
        (
            '{"format": "kfloop-baseline-v1", "rows": 1, "features": {"x": {"kind": "numeric", "edges": [1, 0],'
            ' "fractions": [1.0]}}}',
            "edges must not decrease",
        ),
        ('{"format": "kfloop-baseline-v1", "rows": 1, "features": {"x": {"kind": "ordinal"}}}', "features.x"),
    ],
)
def test_a_bad_baseline_is_an_error_naming_the_field(tmp_path: Path, content: str, reason: str):
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(DataIntegrityError) as caught:
        read_baseline(path)
    assert reason in caught.value.message and str(path) in caught.value.message
