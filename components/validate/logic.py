"""Validate: TFDV statistics, the committed schema as a contract, drift and skew, serving's baseline histograms.

Schema anomalies stop the run (with a Markdown report naming each one). Drift (this span's training split
against the previous span's) and skew (training split against the newest, eval, split) are measured with
TFDV's comparators and reported as metrics; they stop the run only when `fail_on_drift` is set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.beam import BeamConfig
from components.contract import BOOKKEEPING, DWELL, LABEL, NOT_COMPARED, POSITION, PROPENSITY, SIGNAL
from components.validate.config import ValidationConfig
from components.validate.stats import frame_statistics, split_statistics
from kfloop.errors import KfloopError

STATS_FILES = {"train": "train_stats.pb", "eval": "eval_stats.pb"}
OTHER = "__other__"


class DataValidationError(KfloopError):
    """The data broke the schema contract; the report names each anomaly."""

    http_status = 422


@dataclass
class Validation:
    """What validation found."""

    schema_version: str
    anomalies: list[dict[str, str]]
    drift: list[dict[str, Any]] = field(default_factory=list)
    skew: list[dict[str, Any]] = field(default_factory=list)
    previous: str = ""

    @property
    def flagged(self) -> list[dict[str, Any]]:
        return [m for m in self.drift + self.skew if m["flagged"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "anomalies": self.anomalies,
            "drift": self.drift,
            "skew": self.skew,
            "previous_span": self.previous,
        }


def schema_version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_schema(path: Path):
    import tensorflow_data_validation as tfdv

    return tfdv.load_schema_text(str(path))


def statistics(frame: pd.DataFrame, beam: BeamConfig | None = None):
    """TFDV statistics of one frame, through a Beam pipeline on the `beam` runner (default: the DirectRunner)."""
    return frame_statistics(frame, beam)


def contract_anomalies(stats, schema) -> list[dict[str, str]]:
    """Every way the data breaks the schema: [{feature, short, description}]."""
    import tensorflow_data_validation as tfdv

    found = tfdv.validate_statistics(stats, schema)
    rows = [
        {"feature": name, "short": info.short_description, "description": info.description}
        for name, info in sorted(found.anomaly_info.items())
    ]
    for info in found.dataset_anomaly_info.reason:
        rows.append({"feature": "(dataset)", "short": info.short_description, "description": info.description})
    return rows


def compared_features(schema) -> list[str]:
    return [f.name for f in schema.feature if f.name not in NOT_COMPARED and f.name not in (SIGNAL, DWELL)]


def drift_and_skew(schema, train, evaluation, previous, config: ValidationConfig) -> tuple[list, list]:
    """TFDV's comparators on a copy of the schema: (drift vs the previous span, skew train vs eval)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    compared = schema_pb2.Schema()
    compared.CopyFrom(schema)
    for feature in compared.feature:
        if feature.name not in compared_features(schema):
            continue
        if feature.type == schema_pb2.BYTES:
            feature.drift_comparator.infinity_norm.threshold = config.drift_linf
            feature.skew_comparator.infinity_norm.threshold = config.skew_linf
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = config.drift_jsd
            feature.skew_comparator.jensen_shannon_divergence.threshold = config.drift_jsd
    found = tfdv.validate_statistics(train, compared, previous_statistics=previous, serving_statistics=evaluation)
    drift, skew = [], []
    for info in found.drift_skew_info:
        name = ".".join(info.path.step)
        drift += [_measurement(name, m) for m in info.drift_measurements]
        skew += [_measurement(name, m) for m in info.skew_measurements]
    return drift, skew


def _measurement(name: str, measurement) -> dict[str, Any]:
    kind = {1: "l_infinity", 2: "jensen_shannon", 3: "normalized_abs_diff"}.get(measurement.type, "unknown")
    value, threshold = float(measurement.value), float(measurement.threshold)
    return {"feature": name, "measure": kind, "value": value, "threshold": threshold, "flagged": value > threshold}


def baseline_histograms(frame: pd.DataFrame, schema, config: ValidationConfig) -> dict[str, Any]:
    """Per model input: numeric bin edges and fractions, or categorical value fractions. Plain JSON for serving."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    features: dict[str, Any] = {}
    for feature in schema.feature:
        if feature.name in BOOKKEEPING or feature.name not in frame.columns:
            continue
        column = frame[feature.name]
        if feature.type == schema_pb2.BYTES:
            features[feature.name] = _categorical_histogram(column, config.baseline_top_k)
        else:
            features[feature.name] = _numeric_histogram(column, config.baseline_bins)
    return {"format": "kfloop-baseline-v1", "rows": len(frame), "features": features}


def _numeric_histogram(column: pd.Series, bins: int) -> dict[str, Any]:
    values = pd.to_numeric(column, errors="coerce").dropna().to_numpy(dtype=float)
    missing = 1.0 - len(values) / max(len(column), 1)
    if len(values) == 0:
        return {"kind": "numeric", "edges": [], "fractions": [], "missing": missing}
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0]])
    counts, _ = np.histogram(values, bins=edges)
    return {
        "kind": "numeric",
        "edges": [float(e) for e in edges],
        "fractions": [float(c) / len(values) for c in counts],
        "missing": missing,
        "mean": float(values.mean()),
        "std": float(values.std()),
    }


def _categorical_histogram(column: pd.Series, top_k: int) -> dict[str, Any]:
    present = column.dropna().astype(str)
    counts = present.value_counts()
    top = counts.iloc[:top_k]
    fractions = {str(k): float(v) / max(len(present), 1) for k, v in top.items()}
    rest = float(counts.iloc[top_k:].sum()) / max(len(present), 1)
    if rest:
        fractions[OTHER] = rest
    return {"kind": "categorical", "fractions": fractions, "missing": 1.0 - len(present) / max(len(column), 1)}


def report_markdown(result: Validation, span: dict[str, Any], schema_file: str) -> str:
    lines = [f"# Data validation: {'FAILED' if result.anomalies else 'passed'}", ""]
    lines += [
        f"- data version: `{span.get('data_version', '?')}`",
        f"- window: {span.get('window_start', '?')} to {span.get('window_end', '?')}",
        f"- eval split from: {span.get('eval_from', '?')}",
        f"- schema: `{schema_file}` (sha256 `{result.schema_version[:12]}`)",
        f"- previous span: {result.previous or 'none (first run): no drift comparison'}",
        "",
        "## Schema anomalies",
        "",
    ]
    if result.anomalies:
        lines += ["| feature | anomaly | details |", "|---|---|---|"]
        lines += [f"| `{a['feature']}` | {a['short']} | {a['description']} |" for a in result.anomalies]
        lines += [
            "",
            "The run stops here: nothing is trained or registered from this span. If the change is",
            "intended, propose a schema update (`kfloop pipeline propose-schema`) and review it.",
        ]
    else:
        lines.append("None: the data satisfies the schema.")
    for title, rows in (
        ("Drift against the previous span", result.drift),
        ("Skew: train split vs eval split", result.skew),
    ):
        lines += ["", f"## {title}", ""]
        if not rows:
            lines.append("Not measured.")
            continue
        lines += ["| feature | measure | value | threshold | flagged |", "|---|---|---|---|---|"]
        lines += [
            f"| `{m['feature']}` | {m['measure']} | {m['value']:.4f} | {m['threshold']:.4f} | "
            f"{'**yes**' if m['flagged'] else 'no'} |"
            for m in rows
        ]
    return "\n".join(lines) + "\n"


def validate(
    examples: Path,
    *,
    config: ValidationConfig,
    schema_file: Path,
    previous_stats: Path | None,
    out_dir: Path,
    beam: BeamConfig | None = None,
) -> tuple[Validation, str, dict[str, Any]]:
    """Statistics into out_dir (one Beam pipeline on the `beam` runner), then the contract check, drift and skew:
    (result, report, baseline)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from components import examples_io

    schema = load_schema(schema_file)
    frames = {split: examples_io.read_split(examples, split) for split in examples_io.SPLITS}
    stats = split_statistics(examples, examples_io.SPLITS, beam)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, proto in stats.items():
        (out_dir / STATS_FILES[split]).write_bytes(proto.SerializeToString())
    anomalies = []
    for split, proto in stats.items():
        anomalies += [{**a, "split": split} for a in contract_anomalies(proto, schema)]
    anomalies = _merge_splits(anomalies)
    previous = None
    if previous_stats is not None and previous_stats.is_file():
        previous = statistics_pb2.DatasetFeatureStatisticsList.FromString(previous_stats.read_bytes())
    result = Validation(
        schema_version=schema_version(schema_file), anomalies=anomalies, previous=str(previous_stats or "")
    )
    if not anomalies:
        result.drift, result.skew = drift_and_skew(schema, stats["train"], stats["eval"], previous, config)
        if previous is None:
            result.drift = []
    span = examples_io.read_span(examples)
    report = report_markdown(result, span, str(schema_file))
    (out_dir / "validation.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result, report, baseline_histograms(frames["train"], schema, config)


def _merge_splits(anomalies: list[dict[str, str]]) -> list[dict[str, str]]:
    merged: dict[tuple[str, str, str], list[str]] = {}
    for a in anomalies:
        merged.setdefault((a["feature"], a["short"], a["description"]), []).append(a["split"])
    return [
        {"feature": f, "short": s, "description": f"{d} (split: {', '.join(splits)})"}
        for (f, s, d), splits in merged.items()
    ]


SCHEMA_HEADER = """\
# The data contract of the training pipeline: TFDV schema (text proto) of the examples ExampleGen writes.
# Validation fails a run whose data breaks it. Propose an update with `kfloop pipeline propose-schema`
# (writes schema.proposed.pbtxt next to this file), review the diff, and replace this file by hand.
"""


def schema_text(schema) -> str:
    from google.protobuf import text_format

    return SCHEMA_HEADER + text_format.MessageToString(schema)


def propose_schema(stats, current=None):
    """A schema inferred from `stats` with the contract's rules applied, for review (never applied by itself)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = tfdv.infer_schema(stats) if current is None else tfdv.update_schema(current, stats)
    for feature in schema.feature:
        _apply_rules(feature, schema_pb2)
    # Categorical values may be new at any time (vocabularies have OOV buckets): no string domains but signal's.
    kept = [d for d in schema.string_domain if d.name == SIGNAL]
    del schema.string_domain[:]
    schema.string_domain.extend(kept)
    for domain in schema.string_domain:
        if domain.name == SIGNAL:
            del domain.value[:]
            domain.value.extend(["implicit", "explicit"])
    return schema


_INT_RANGES = {POSITION: (1, 100), LABEL: (0, 1), DWELL: (0, 86_400_000)}
_FLOAT_RANGES = {PROPENSITY: (1e-12, 1.0)}
_OPTIONAL = (POSITION, PROPENSITY, "policy", "model_version", "variant", "source", DWELL)


def _apply_rules(feature, schema_pb2) -> None:
    from kfloop.features import names

    name = feature.name
    if feature.type == schema_pb2.BYTES and name != SIGNAL:
        feature.ClearField("domain_info")  # new categories are expected (OOV buckets); ids need not be ints
    if name in _OPTIONAL:
        feature.presence.min_fraction = 0.0
        feature.presence.min_count = 0
        feature.ClearField("shape")
        feature.value_count.min = 1
        feature.value_count.max = 1
    if name in _INT_RANGES:
        low, high = _INT_RANGES[name]
        feature.ClearField("bool_domain")
        feature.int_domain.min, feature.int_domain.max = low, high
    elif name in _FLOAT_RANGES:
        feature.float_domain.min, feature.float_domain.max = _FLOAT_RANGES[name]
    elif "_" in name and name.split("_", 1)[0] in (names.USER_PREFIX, names.USER_ITEM_PREFIX):
        stat = name.split("_", 1)[1].rsplit("_", 1)[0]
        if stat in names.INTEGER_STATS:
            feature.int_domain.min = 0
        elif stat in ("ctr", "scroll_depth"):
            feature.float_domain.min, feature.float_domain.max = 0.0, 1.0
        elif stat == "rating_mean":
            feature.float_domain.min, feature.float_domain.max = 1.0, 5.0
        elif stat == "dwell_s":
            feature.float_domain.min = 0.0


def reject_span(examples: Path, result: Validation, report: str, registry_uri: str) -> DataValidationError:
    """Keep the report of a span that broke the schema in the registry; returns the error that stops the run."""
    from components import examples_io
    from kfloop.registry import ModelRegistry

    kept = ModelRegistry(registry_uri).record_rejection(examples_io.read_span(examples)["data_version"], report)
    return DataValidationError(
        f"{len(result.anomalies)} schema anomalies (report kept at {kept}): "
        + "; ".join(f"{a['feature']}: {a['short']}" for a in result.anomalies)
    )


def previous_statistics(registry_uri: str, workdir: Path) -> Path | None:
    """Training statistics of the newest registered version (the previous span), if any."""
    from kfloop.registry import ModelRegistry

    registry = ModelRegistry(registry_uri)
    for version in reversed(registry.versions()):
        if "statistics" in registry.card(version).artifacts:
            return registry.local_copy(version, f"statistics/{STATS_FILES['train']}", workdir)
    return None
