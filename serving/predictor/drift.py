"""Input drift: the population stability index (PSI) of each model input, over a sliding window of the items the
predictor showed, against the served version's training baseline. Pure: no I/O, no clock, no threads.

The baseline (`baseline.json`, written by the Validate component and pushed with the version) holds, per model
input, the training split's histogram: numeric inputs as quantile bin edges and the fraction of rows in each
bin, categorical ones as the fraction of each frequent value (the rest under `__other__`). Training rows are
shown items, so serving watches shown items too (the slate's rows of the model's input matrices).

As each slate is served, its rows are binned into the baseline's bins (numeric: one vectorized comparison
against every feature's edges; categorical: a dict lookup per value) and the small codes go into a ring buffer.
The PSI is computed from the buffer's bin counts, off the request path:

    PSI = sum over bins of (a - e) * ln(a / e)

with e the baseline's fraction and a the window's, both floored at `PSI_FLOOR` so an empty bin on either side
counts as rare, not as infinitely surprising. A numeric value outside the training range falls in the outer bin
on its side (the outer bins are open); a categorical value the baseline did not keep falls in `__other__` (a bin
of its own, expected 0, when the baseline kept every value). Missing values are not compared: serving refuses a
request that lacks an input. Conventional reading: below 0.1 stable, 0.1-0.2 a moderate shift, above 0.2 a
significant one (the alert's threshold).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from kfloop.config import StrictModel
from kfloop.errors import DataIntegrityError, field_errors

PSI_FLOOR = 1e-4
OTHER = "__other__"
"""The categorical bin of the values the baseline did not keep (components/validate/logic.py writes it)."""
BASELINE_FORMAT = "kfloop-baseline-v1"


class NumericHistogram(StrictModel):
    """A numeric input's training histogram: quantile bin edges and the fraction of present values per bin."""

    kind: Literal["numeric"]
    """Always numeric."""
    edges: list[float]
    """Bin edges, non-decreasing (np.histogram's: the last bin includes its right edge); empty: no values."""
    fractions: list[float]
    """Fraction of the present values in each bin (one fewer than the edges)."""
    missing: float = Field(default=0.0, ge=0, le=1)
    """Fraction of training rows without a value (not compared: serving has none)."""
    mean: float | None = None
    """Mean of the present values."""
    std: float | None = None
    """Standard deviation of the present values."""

    @model_validator(mode="after")
    def _consistent(self) -> NumericHistogram:
        if self.edges and len(self.fractions) != len(self.edges) - 1:
            raise ValueError(f"{len(self.fractions)} fractions for {len(self.edges)} edges")
        if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must not decrease")
        return self


class CategoricalHistogram(StrictModel):
    """A categorical input's training histogram: the fraction of each frequent value, the rest as `__other__`."""

    kind: Literal["categorical"]
    """Always categorical."""
    fractions: dict[str, float]
    """Fraction of the present values per value kept (and `__other__` for the rest, if any)."""
    missing: float = Field(default=0.0, ge=0, le=1)
    """Fraction of training rows without a value (not compared)."""


Histogram = Annotated[NumericHistogram | CategoricalHistogram, Field(discriminator="kind")]


class Baseline(StrictModel):
    """baseline.json: the training split's histogram of each model input."""

    format: Literal["kfloop-baseline-v1"]
    """Layout of this file."""
    rows: int = Field(ge=0)
    """Training rows the histograms were computed from."""
    features: dict[str, Histogram]
    """Histogram per model input."""


def read_baseline(path: Path) -> Baseline:
    """A version's baseline.json; a bad one is an error naming the field and the reason."""
    try:
        return Baseline.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise DataIntegrityError(f"{path} is not JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{e['field']}: {e['reason']}" for e in field_errors(exc))
        raise DataIntegrityError(f"{path}: {problems}", details=field_errors(exc)) from None


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index of `actual` against `expected` (fractions over the same bins)."""
    return float(psi_terms(expected, actual, floor).sum())


def psi_terms(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> np.ndarray:
    """Each bin's term of the PSI: (a - e) ln(a / e), both fractions floored."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return (a - e) * np.log(a / e)


@dataclass(frozen=True)
class FeatureBins:
    """One watched input: where its values are in the model's input matrices, its bins, their expected fractions."""

    name: str
    kind: str
    """The input matrix it is a column of: "string", "int" or "float"."""
    column: int
    expected: np.ndarray
    """Baseline fraction per bin (summing to 1)."""
    interior_edges: np.ndarray | None = None
    """Numeric: the edges between bins (a value v is in bin #(edges <= v)); the outer bins are open."""
    codes: dict[str, int] | None = None
    """Categorical: bin of each value kept; any other value is in bin `other`."""
    other: int = -1


def numeric_bins(name: str, kind: str, column: int, histogram: NumericHistogram) -> FeatureBins | None:
    edges = np.asarray(histogram.edges, dtype=np.float64)
    fractions = np.asarray(histogram.fractions, dtype=np.float64)
    if len(edges) < 2 or fractions.sum() <= 0:
        return None  # no training values: nothing to compare with
    if edges[0] == edges[-1]:  # a constant input: below, at and above its one value
        value = edges[0]
        interior, expected = np.array([value, np.nextafter(value, np.inf)]), np.array([0.0, 1.0, 0.0])
    else:
        interior, expected = edges[1:-1], fractions / fractions.sum()
    return FeatureBins(name, kind, column, expected, interior_edges=interior)


def categorical_bins(name: str, kind: str, column: int, histogram: CategoricalHistogram) -> FeatureBins | None:
    kept = [(value, f) for value, f in histogram.fractions.items() if value != OTHER]
    if not kept and OTHER not in histogram.fractions:
        return None
    codes = {value: i for i, (value, _) in enumerate(kept)}
    expected = np.array([f for _, f in kept] + [histogram.fractions.get(OTHER, 0.0)], dtype=np.float64)
    if expected.sum() <= 0:
        return None
    return FeatureBins(name, kind, column, expected / expected.sum(), codes=codes, other=len(kept))


class InputBinner:
    """Bins rows of the model's input matrices (one per dtype, as serving.common.model_io.Feed holds them) into
    the bins of every model input the baseline has a histogram of."""

    def __init__(
        self, baseline: Baseline, columns: dict[str, list[str]], exclude: frozenset[str] = frozenset()
    ) -> None:
        numeric, categorical = [], []
        for kind, names in columns.items():
            for column, name in enumerate(names):
                histogram = None if name in exclude else baseline.features.get(name)
                if isinstance(histogram, NumericHistogram) and kind in ("int", "float"):
                    numeric.append(numeric_bins(name, kind, column, histogram))
                elif isinstance(histogram, CategoricalHistogram) and kind == "string":
                    categorical.append(categorical_bins(name, kind, column, histogram))
        watched = [f for f in numeric if f is not None]
        # int columns first, then float ones: the order in which `codes` concatenates their values
        self.numeric = [f for f in watched if f.kind == "int"] + [f for f in watched if f.kind == "float"]
        self.categorical = [f for f in categorical if f is not None]
        self.features = self.numeric + self.categorical
        """Watched inputs, in the order of the codes' columns."""
        inputs = {n for names in columns.values() for n in names}
        self.excluded = sorted(inputs & exclude)
        """Model inputs left out by configuration."""
        self.unwatched = sorted(inputs - {f.name for f in self.features} - exclude)
        """Model inputs without a usable baseline histogram."""
        width = max((len(_edges(f)) for f in self.numeric), default=0) + 1
        self._edges = np.full((len(self.numeric), width), np.inf)  # padded with +inf: above every value
        for i, feature in enumerate(self.numeric):
            self._edges[i, : len(_edges(feature))] = _edges(feature)
        self._int_cols = np.array([f.column for f in self.numeric if f.kind == "int"], dtype=np.intp)
        self._float_cols = np.array([f.column for f in self.numeric if f.kind == "float"], dtype=np.intp)
        self._string_cols = np.array([f.column for f in self.categorical], dtype=np.intp)
        self._lookups = [(f.codes.get, f.other) for f in self.categorical]  # type: ignore[union-attr]

    def codes(self, tensors: dict[str, np.ndarray], rows: Any) -> np.ndarray:
        """(len(rows), len(features)) bin codes of these rows of the input matrices. A slate is a few rows, so
        the cost is numpy's per-call overhead: a handful of calls for every input at once."""
        rows = np.asarray(rows, dtype=np.intp)[:, None]
        out = np.empty((len(rows), len(self.features)), dtype=np.int16)
        n = len(self.numeric)
        if n:
            ints, floats = tensors["int"][rows, self._int_cols], tensors["float"][rows, self._float_cols]
            values = np.concatenate((ints, floats), axis=1)
            # the bin is the number of edges <= v: the first edge above v (there is one: the +inf padding)
            out[:, :n] = np.argmax(values[:, :, None] < self._edges, axis=2)
        if self.categorical:
            strings = tensors["string"][rows, self._string_cols].tolist()
            lookups = self._lookups
            out[:, n:] = [[get(v, other) for (get, other), v in zip(lookups, row, strict=True)] for row in strings]
        return out


def _edges(feature: FeatureBins) -> np.ndarray:
    assert feature.interior_edges is not None
    return feature.interior_edges


class DriftWindow:
    """The bin codes of the last `size` shown items; `add` on the request path, `psi` from any thread."""

    def __init__(self, features: list[FeatureBins], size: int) -> None:
        self.features = features
        self.size = size
        self._codes = np.zeros((size, len(features)), dtype=np.int16)
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()
        bins = [len(f.expected) for f in features]
        self._offsets = np.cumsum([0, *bins[:-1]]).astype(np.int32)
        """Where each feature's bins start in one count vector for all features."""
        self._expected = np.concatenate([f.expected for f in features]) if features else np.zeros(0)

    @property
    def filled(self) -> int:
        return self._filled

    def add(self, codes: np.ndarray) -> None:
        """Rows of codes (at most `size` are kept: the newest)."""
        codes = codes[-self.size :]
        n = len(codes)
        with self._lock:
            end = self._next + n
            if end <= self.size:
                self._codes[self._next : end] = codes
            else:
                first = self.size - self._next
                self._codes[self._next :] = codes[:first]
                self._codes[: n - first] = codes[first:]
            self._next = end % self.size
            self._filled = min(self._filled + n, self.size)

    def psi(self, min_samples: int) -> dict[str, float] | None:
        """PSI of each feature over the window; None while it holds fewer than `min_samples` items. One count
        over every feature's bins at once (a few milliseconds for 10,000 items of 50 inputs): the thread that
        computes it holds the interpreter that long, and a request waits for it."""
        with self._lock:
            if self._filled < min_samples:
                return None
            window = self._codes[: self._filled] + self._offsets  # an unfilled window is filled from the start
        counts = np.bincount(window.ravel(), minlength=len(self._expected))
        terms = psi_terms(self._expected, counts / len(window))
        by_feature = np.add.reduceat(terms, self._offsets) if len(terms) else []
        return {f.name: float(v) for f, v in zip(self.features, by_feature, strict=True)}
