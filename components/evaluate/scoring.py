"""Scores from an exported serving model (its signatures; the tf.Transform graph is inside)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kfloop.errors import InvalidInput
from kfloop.model_contract import LOGIT, POSITION_INPUT, SCORE, SCORE_AT_POSITION_SIGNATURE, SERVING_SIGNATURE

BATCH = 65_536


class Scorer:
    """A serving SavedModel: logits at the serving position, or at given positions (the training form)."""

    def __init__(self, path: Path | str) -> None:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf

        self._tf = tf
        self.module = tf.saved_model.load(str(path))
        self.serving = self.module.signatures[SERVING_SIGNATURE]
        self.at_position = self.module.signatures[SCORE_AT_POSITION_SIGNATURE]
        self.inputs = {name: spec.dtype for name, spec in self.serving.structured_input_signature[1].items()}

    def missing_inputs(self, frame: pd.DataFrame) -> list[str]:
        return sorted(set(self.inputs) - set(frame.columns))

    def logits(self, frame: pd.DataFrame) -> np.ndarray:
        """Logit of each row at the serving position (what ranking uses)."""
        return self._run(frame, lambda feeds, _: self.serving(**feeds)[LOGIT])

    def scores_at(self, frame: pd.DataFrame, position: np.ndarray) -> np.ndarray:
        """P(click) of each row at its own position (for metrics on logged clicks)."""
        return self._run(
            frame, lambda feeds, rows: self.at_position(**feeds, **{POSITION_INPUT: position[rows]})[SCORE]
        )

    def _run(self, frame: pd.DataFrame, call: Any) -> np.ndarray:
        missing = self.missing_inputs(frame)
        if missing:
            raise InvalidInput(f"the model needs inputs the data does not have: {missing}")
        out = []
        for start in range(0, len(frame), BATCH):
            rows = slice(start, start + BATCH)
            feeds = {name: self._tensor(frame[name].iloc[rows], dtype) for name, dtype in self.inputs.items()}
            out.append(call(feeds, rows).numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def _tensor(self, column: pd.Series, dtype: Any) -> Any:
        tf = self._tf
        if dtype == tf.string:
            return tf.constant(column.astype(str).to_numpy().astype(object))
        if dtype.is_integer:
            return tf.constant(column.to_numpy(dtype=np.int64))
        return tf.constant(column.to_numpy(dtype=np.float32))
