"""TFMA metrics on the eval split, overall and by slice, for the candidate and (if any) the production model.

Predictions are P(click) at each example's logged position (the training form), so AUC, log loss and
calibration measure the model against the clicks that were logged. Each slice reports whether it is
measurable: one with fewer than `min_slice_examples` examples or fewer than `min_slice_positives`
positives (or negatives) says "too small to measure" instead of a number nobody should act on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.beam import BeamConfig, pipeline_options
from components.evaluate.config import EvaluateConfig

METRICS = ("example_count", "auc", "binary_crossentropy", "calibration", "mean_label", "mean_prediction")
OVERALL = "overall"


def eval_config(models: list[str], slice_features: list[str], bins: int) -> Any:
    import tensorflow_model_analysis as tfma

    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(name=model, label_key="label", prediction_key=f"prediction_{model}") for model in models
        ],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="AUC"),
                    tfma.MetricConfig(class_name="BinaryCrossentropy"),
                    tfma.MetricConfig(class_name="Calibration"),
                    tfma.MetricConfig(class_name="MeanLabel"),
                    tfma.MetricConfig(class_name="MeanPrediction"),
                    tfma.MetricConfig(class_name="CalibrationPlot", config=f'"num_buckets": {bins}'),
                ],
                model_names=models,
            )
        ],
        slicing_specs=[tfma.SlicingSpec(), *[tfma.SlicingSpec(feature_keys=[f]) for f in slice_features]],
    )


def tfma_metrics(
    frame: pd.DataFrame,
    predictions: dict[str, np.ndarray],
    config: EvaluateConfig,
    out: Path,
    beam: BeamConfig | None = None,
) -> dict:
    """{slice name: {"examples", "positives", "measurable", "reason", "models": {model: {metric: value}}}}, from a
    TFMA pipeline on the `beam` runner (default: the DirectRunner)."""
    import tensorflow_model_analysis as tfma

    data = pd.DataFrame({"label": frame["label"].to_numpy(dtype=float)})
    for model, values in predictions.items():
        data[f"prediction_{model}"] = values.astype(float)
    for feature in config.slice_features:
        column = frame[feature]
        data[feature] = column.astype("Int64").astype(str) if feature == "position" else column.astype(str)
    cfg = eval_config(list(predictions), config.slice_features, config.calibration_bins)
    run_tfma(data, cfg, out, beam or BeamConfig())
    slices = _read(tfma.load_metrics(str(out)), only_model=next(iter(predictions)) if len(predictions) == 1 else None)
    for name, entry in slices.items():
        rows = data if name == OVERALL else _slice_rows(data, name)
        _measurability(entry, rows, config)
    return dict(sorted(slices.items(), key=lambda kv: (kv[0] != OVERALL, kv[0])))


def run_tfma(data: pd.DataFrame, eval_config: Any, out: Path, beam: BeamConfig) -> None:
    """What `tfma.analyze_raw_data` does (the same rows, extractors, evaluators and writers), on a Beam
    pipeline with our options: analyze_raw_data always builds a default `beam.Pipeline()`."""
    import apache_beam
    import pyarrow as pa
    import tensorflow_model_analysis as tfma
    from tfx_bsl.arrow import table_util

    rows = table_util.CanonicalizeRecordBatch(pa.RecordBatch.from_pandas(data))
    writers = tfma.default_writers(str(out), eval_config=eval_config)
    with apache_beam.Pipeline(options=pipeline_options(beam)) as pipeline:
        _ = (
            pipeline
            | "Rows" >> apache_beam.Create([rows])
            | "ExtractEvaluateAndWriteResults"
            >> tfma.ExtractEvaluateAndWriteResults(eval_config=eval_config, writers=writers, output_path=str(out))
        )


def _read(records: Any, *, only_model: str | None) -> dict[str, dict[str, Any]]:
    """Metrics by slice and model (TFMA leaves the model name empty when there is only one)."""
    slices: dict[str, dict[str, Any]] = {}
    for record in records:
        keys = [(k.column, _slice_value(k)) for k in record.slice_key.single_slice_keys]
        name = OVERALL if not keys else ",".join(f"{c}={v}" for c, v in keys)
        models: dict[str, dict[str, float]] = {}
        for item in record.metric_keys_and_values:
            if item.key.name in METRICS and item.value.HasField("double_value"):
                model = item.key.model_name or only_model or ""
                models.setdefault(model, {})[item.key.name] = _finite(item.value.double_value.value)
        slices[name] = {"models": models}
    return slices


def _slice_value(key: Any) -> str:
    kind = key.WhichOneof("kind")
    value = getattr(key, kind)
    return value.decode() if isinstance(value, bytes) else str(value)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


def _slice_rows(data: pd.DataFrame, name: str) -> pd.DataFrame:
    mask = np.ones(len(data), dtype=bool)
    for part in name.split(","):
        column, value = part.split("=", 1)
        mask &= data[column].to_numpy() == value
    return data[mask]


def _measurability(entry: dict[str, Any], rows: pd.DataFrame, config: EvaluateConfig) -> None:
    positives = int(rows["label"].sum())
    negatives = len(rows) - positives
    entry["examples"], entry["positives"] = len(rows), positives
    reasons = []
    if len(rows) < config.min_slice_examples:
        reasons.append(f"{len(rows)} examples < {config.min_slice_examples}")
    if min(positives, negatives) < config.min_slice_positives:
        reasons.append(f"{positives} positives / {negatives} negatives: fewer than {config.min_slice_positives}")
    entry["measurable"] = not reasons
    entry["reason"] = "too small to measure: " + "; ".join(reasons) if reasons else ""
