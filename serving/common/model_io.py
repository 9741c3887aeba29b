"""The exported SavedModel, called through its `serving_default` signature (never model.predict: ~100x slower).

The signature names the raw inputs the model takes and their dtypes; requests are checked against it, so a
missing or mistyped feature is a 400 that names the feature, not a TensorFlow error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kfloop.errors import MalformedRequest
from kfloop.features import names
from kfloop.model_contract import EXPLAIN_INPUTS_SIGNATURE, SCORE_OUTPUTS, SERVING_SIGNATURE, X
from serving.common.request_bodies import mostly_parts


def import_tensorflow() -> Any:
    """TensorFlow, with one thread per op pool: the models are small, and handing each op to a pool thread
    costs more CPU than running it (measured: ~0.5 ms a request at 80 candidates)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _hidden(KERAS_OPTIONAL_IMPORTS):
        import tensorflow as tf

    if not _THREADS_SET:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.config.threading.set_intra_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already ran something in this process: keep its pools
            pass
        _THREADS_SET.append(True)
    return tf


_THREADS_SET: list[bool] = []
KERAS_OPTIONAL_IMPORTS = ("sklearn", "matplotlib")
"""Importing TensorFlow imports Keras, and Keras imports these when they are installed (its scikit-learn wrappers
and its plots; it does without them otherwise): ~6 s of CPU in each process here, for nothing a SavedModel
signature needs. The serving environment has them for Alibi, which imports them itself."""


@contextmanager
def _hidden(modules: tuple[str, ...]) -> Iterator[None]:
    """Imports of `modules` fail (as if not installed) inside the block, if TensorFlow is not imported yet (else
    the block imports nothing); outside it they import as usual."""
    hide = [] if "tensorflow" in sys.modules else [m for m in modules if m not in sys.modules]
    for module in hide:
        sys.modules[module] = None  # type: ignore[assignment]  (None here: `import` raises ImportError)
    try:
        yield
    finally:
        for module in hide:
            if sys.modules.get(module, ...) is None:
                del sys.modules[module]


@dataclass(frozen=True)
class Feed:
    """Model inputs for one ranking: tensors for the signature and the exact values recorded for the audit."""

    tensors: dict[str, np.ndarray]
    """One matrix per dtype: "string", "int", "float" (columns in the model's input order)."""
    recorded_user: dict[str, Any]
    """Per-request values: {feature: value}."""
    recorded_items: dict[str, list[Any]]
    """Per-candidate values: {feature: [value per candidate]}."""
    recorded_mostly: dict[str, dict[str, Any]]
    """Per-candidate features where at least half the candidates share one value: {feature: {"value": v,
    "except": [[candidate index, value], ...]}}. User x item aggregates are defaults for almost every item a
    user never touched; recording them this way keeps the decision record (and the audit store) ~4x smaller,
    and exact."""


_KIND = {"string": "string", "int64": "int", "int32": "int", "float32": "float", "float64": "float"}


class SavedRanker:
    """One loaded version's SavedModel.

    Calling a signature with ~50 separate tensors costs more than the model itself (a conversion per tensor
    and structured-input binding); a tf.function taking one matrix per dtype, which splits the columns and
    calls the signature in-graph, needs three conversions per request.
    """

    def __init__(self, model_path: Path) -> None:
        tf = import_tensorflow()
        self._tf = tf
        self._loaded = tf.saved_model.load(str(model_path))  # keep a reference: the signatures need it
        serve = self._loaded.signatures[SERVING_SIGNATURE]
        specs = serve.structured_input_signature[1]
        self.input_dtypes = {name: spec.dtype for name, spec in specs.items()}
        self.input_kinds = {name: _KIND[spec.dtype.name] for name, spec in specs.items()}
        self._groups = {
            kind: [n for n in self.input_kinds if self.input_kinds[n] == kind] for kind in ("string", "int", "float")
        }
        self._score = _packed(tf, serve, self._groups, self.input_dtypes, SCORE_OUTPUTS)
        explain = self._loaded.signatures.get(EXPLAIN_INPUTS_SIGNATURE)
        self._explain = _packed(tf, explain, self._groups, self.input_dtypes, (X,)) if explain else None

    @property
    def columns(self) -> dict[str, list[str]]:
        """The model's inputs by input matrix ("string", "int", "float"), in each matrix's column order."""
        return self._groups

    def feed(
        self,
        candidates: list[str],
        user: dict[str, Any],
        items: dict[str, Any],
        items_mostly: dict[str, Any] | None = None,
    ) -> Feed:
        """One matrix per dtype (item_id is the candidates, a user value is repeated per candidate), and the
        exact values recorded for the audit. Per-candidate features come as columns (`items`) or in the
        compact form (`items_mostly`, serving.common.protocol). A missing or mistyped feature is a 400 naming it."""
        n = len(candidates)
        mostly_in = items_mostly or {}
        recorded_user: dict[str, Any] = {}
        recorded_items: dict[str, list[Any]] = {}
        recorded_mostly: dict[str, dict[str, Any]] = {}
        matrices = {}
        for kind, group in self._groups.items():
            matrix = np.empty((n, len(group)), dtype=_NUMPY[kind])
            per_item = [(j, name) for j, name in enumerate(group) if name != names.ITEM_ID and name in items]
            if per_item:
                block = _item_block(kind, [name for _, name in per_item], items, n)
                matrix[:, [j for j, _ in per_item]] = block
                if kind == "string":  # item context varies by item: recorded as it is
                    recorded_items.update({name: block[:, i].tolist() for i, (_, name) in enumerate(per_item)})
                else:  # user x item aggregates are mostly defaults: recorded as one value and the exceptions
                    for i, ((_, name), mostly) in enumerate(zip(per_item, _mostly_one_value(block), strict=True)):
                        if mostly is None:
                            recorded_items[name] = block[:, i].tolist()
                        else:
                            recorded_mostly[name] = mostly
            compact = [
                (j, name)
                for j, name in enumerate(group)
                if name in mostly_in and name not in items and name != names.ITEM_ID
            ]
            if compact:
                recorded_mostly.update(_fill_mostly(matrix, compact, mostly_in, kind))
            for j, name in enumerate(group):
                if name == names.ITEM_ID:
                    matrix[:, j] = candidates
                elif name in items or name in mostly_in:
                    continue
                elif name in user:
                    value = _scalar(name, user[name], kind)
                    matrix[:, j] = value
                    recorded_user[name] = value
                else:
                    raise MalformedRequest(f"feature {name} is missing: the model {self.describe()} needs it")
            matrices[kind] = matrix
        return Feed(matrices, recorded_user, recorded_items, recorded_mostly)

    def score(self, feed: Feed) -> tuple[np.ndarray, np.ndarray]:
        """(score, logit) per candidate."""
        score, logit = self._score(feed.tensors)
        return score, logit

    def explain_inputs(self, feed: Feed) -> np.ndarray:
        """x, the explainer sub-model's input, per candidate."""
        if self._explain is None:
            raise MalformedRequest(f"this model exports no {EXPLAIN_INPUTS_SIGNATURE} signature")
        return self._explain(feed.tensors)[0]

    def describe(self) -> str:
        return f"({len(self.input_dtypes)} inputs)"

    def warm_up(self) -> None:
        """Trace the packed call, so the first request does not pay for it."""
        blank = {"string": "", "int": 0, "float": 0.0}
        user = {name: blank[kind] for name, kind in self.input_kinds.items()}
        for n in (1, 2):
            self.score(self.feed([f"warm-up-{i}" for i in range(n)], user, {}))
            if self._explain is not None:
                self.explain_inputs(self.feed(["warm-up"], user, {}))


_NUMPY = {"string": object, "int": np.int64, "float": np.float64}


def _packed(tf: Any, signature: Any, groups: dict[str, list[str]], dtypes: dict[str, Any], outputs: tuple) -> Any:
    """numpy matrices by dtype -> the signature's outputs as numpy, through one tf.function."""
    specs = [
        tf.TensorSpec([None, len(groups["string"])], tf.string),
        tf.TensorSpec([None, len(groups["int"])], tf.int64),
        tf.TensorSpec([None, len(groups["float"])], tf.float64),
    ]

    @tf.function(input_signature=specs, autograph=False)
    def call(strings: Any, ints: Any, floats: Any) -> Any:
        # one cast per target dtype and one unstack per matrix: a slice and a cast per column were ~100
        # more graph ops to execute per call (~0.15 ms)
        feed = {}
        for matrix, kind in ((strings, "string"), (ints, "int"), (floats, "float")):
            group = groups[kind]
            if not group:
                continue
            columns = {
                dtype: tf.unstack(tf.cast(matrix, dtype), num=len(group), axis=1)
                for dtype in {dtypes[name] for name in group}
            }
            feed.update({name: columns[dtypes[name]][j] for j, name in enumerate(group)})
        result = signature(**feed)
        return tuple(result[o] for o in outputs)

    concrete = call.get_concrete_function()  # skips the polymorphic dispatch: ~0.3 ms a call

    def run(matrices: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        out = concrete(
            tf.constant(matrices["string"], tf.string),
            tf.constant(matrices["int"], tf.int64),
            tf.constant(matrices["float"], tf.float64),
        )
        return tuple(o.numpy() for o in out)

    return run


def _mostly_one_value(block: np.ndarray) -> list[dict[str, Any] | None]:
    """Per column of an (n, f) block: {"value": v, "except": [[i, value_i], ...]} when v (the column's first
    or second value) fills at least half of it, else None. Vectorized over the columns: ~20 columns a request."""
    n = block.shape[0]
    if n < 2:
        return [None] * block.shape[1]
    same = [block == block[probe] for probe in (0, 1)]
    counts = [s.sum(axis=0) for s in same]
    out: list[dict[str, Any] | None] = []
    for j in range(block.shape[1]):
        probe = 0 if 2 * counts[0][j] >= n else (1 if 2 * counts[1][j] >= n else None)
        if probe is None:
            out.append(None)
            continue
        others = np.flatnonzero(~same[probe][:, j])
        values = block[others, j].tolist()
        out.append(
            {"value": block[probe, j].item(), "except": [[int(i), v] for i, v in zip(others, values, strict=True)]}
        )
    return out


def _fill_mostly(
    matrix: np.ndarray, columns: list[tuple[int, str]], mostly: dict[str, Any], kind: str
) -> dict[str, dict[str, Any]]:
    """Fill the matrix's columns given in the compact form (one assignment for all, one for every exception);
    returns them as recorded, values checked and typed."""
    n = matrix.shape[0]
    recorded, rows, cols, values = {}, [], [], []
    for j, name in columns:
        value, exceptions = mostly_parts(name, mostly[name], n)
        checked = [[index, _scalar(name, item_value, kind)] for index, item_value in exceptions]
        recorded[name] = {"value": _scalar(name, value, kind), "except": checked}
        rows += [index for index, _ in checked]
        cols += [j] * len(checked)
        values += [item_value for _, item_value in checked]
    matrix[:, [j for j, _ in columns]] = [recorded[name]["value"] for _, name in columns]
    if rows:
        matrix[rows, cols] = values
    return recorded


def _scalar(name: str, value: Any, kind: str) -> Any:
    if kind == "string":
        if not isinstance(value, str):
            raise MalformedRequest(f"feature {name} must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        raise MalformedRequest(f"feature {name} must be a finite number")
    if kind == "int":
        if value != int(value):
            raise MalformedRequest(f"feature {name} must be a whole number")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise MalformedRequest(f"feature {name} is beyond the 64-bit integer range")
        return int(value)
    if isinstance(value, int) and abs(value) > _FLOAT64_MAX:
        raise MalformedRequest(f"feature {name} is beyond the 64-bit float range")
    return value


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT64_MAX = float(np.finfo(np.float64).max)


def _item_block(kind: str, feature_names: list[str], items: dict[str, Any], n: int) -> np.ndarray:
    """The (n, f) values of per-candidate features as the dtype the model takes, converted and checked in
    one pass; when that fails, column by column, so the 400 names the feature."""
    columns = [items[name] for name in feature_names]
    if all(isinstance(c, list) and len(c) == n for c in columns):
        try:
            block = np.asarray(columns).T
        except ValueError:  # ragged nested values: the column check names the feature
            block = np.empty(0)
        if _block_is_valid(block, kind):
            return block if kind == "string" else block.astype(_NUMPY[kind], copy=False)
    block = np.empty((n, len(feature_names)), dtype=_NUMPY[kind])
    for j, (name, values) in enumerate(zip(feature_names, columns, strict=True)):
        if not isinstance(values, list) or len(values) != n:
            count = len(values) if isinstance(values, list) else "not a list of"
            raise MalformedRequest(f"feature {name}: {count} values for {n} candidates")
        block[:, j] = _column(name, values, kind)
    return block


def _block_is_valid(block: np.ndarray, kind: str) -> bool:
    if block.ndim != 2:
        return False  # nested values
    if kind == "string":
        return block.dtype.kind == "U"
    if block.dtype.kind in "iu":
        return True
    finite = block.dtype.kind == "f" and bool(np.isfinite(block).all())
    return finite and (kind == "float" or np.array_equal(block, np.round(block)))


def _column(name: str, values: list[Any], kind: str) -> np.ndarray:
    """Values of one feature as the dtype the model takes; a 400 naming the feature otherwise."""
    array = np.asarray(values)
    if kind == "string":
        if array.dtype.kind != "U":
            raise MalformedRequest(f"feature {name} must be strings")
        return array
    if array.dtype.kind not in "iuf" or array.ndim != 1:
        raise MalformedRequest(f"feature {name} must be numbers, one per candidate")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise MalformedRequest(f"feature {name} must be finite numbers")
        if kind == "int":
            if not np.all(array == np.round(array)):
                raise MalformedRequest(f"feature {name} must be whole numbers")
            return array.astype(np.int64)
    return array
