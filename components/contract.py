"""Roles of the example columns: which are bookkeeping, which feed the model.

The committed schema (pipelines/schema/schema.pbtxt) is the contract: the model's inputs are the schema's
features that are not bookkeeping; a string feature is categorical (a vocabulary), a number is numeric.
"""

from __future__ import annotations

from pathlib import Path

LABEL = "label"
POSITION = "position"
PROPENSITY = "propensity"
SIGNAL = "signal"
ITEM_ID = "item_id"
USER_ID = "user_id"
REQUEST_ID = "request_id"
TS = "ts_us"
POLICY = "policy"
DWELL = "dwell_ms"
MODEL_VERSION = "model_version"
VARIANT = "variant"
SOURCE = "source"

# Present in every example but never a model input (ids, time, logging details, outcomes).
BOOKKEEPING = (
    REQUEST_ID,
    USER_ID,
    TS,
    POSITION,
    POLICY,
    PROPENSITY,
    MODEL_VERSION,
    VARIANT,
    SOURCE,
    SIGNAL,
    LABEL,
    DWELL,
)
# High-cardinality ids and time, and which model served (changes by design): no drift comparison, no baseline
# histogram.
NOT_COMPARED = (REQUEST_ID, USER_ID, TS, MODEL_VERSION, VARIANT, SOURCE)

DEFAULT_SCHEMA = Path(__file__).resolve().parents[1] / "pipelines" / "schema" / "schema.pbtxt"


def schema_path(configured: str) -> Path:
    return Path(configured) if configured else DEFAULT_SCHEMA


def model_inputs(schema) -> tuple[list[str], list[str]]:
    """(categorical, numeric) model input features of a schema, in schema order."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    categorical, numeric = [], []
    for feature in schema.feature:
        if feature.name in BOOKKEEPING:
            continue
        (categorical if feature.type == schema_pb2.BYTES else numeric).append(feature.name)
    return categorical, numeric
