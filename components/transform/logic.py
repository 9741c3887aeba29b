"""Transform: analyze the training split with tf.Transform on Beam and write the transform graph.

Mirrors TFX Transform with materialization off: the trainer applies the saved graph itself (and exports it
inside the serving model), so the transformed examples are never written out.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from components import examples_io
from components.beam import BeamConfig, pipeline_options
from components.contract import model_inputs
from components.transform.config import TransformConfig
from components.transform.preprocessing import VOCABULARY, make_preprocessing_fn

FEATURES_FILE = "features.json"


def input_schema(schema):  # the model inputs of the contract only: what serving must send
    from tensorflow_metadata.proto.v0 import schema_pb2

    categorical, numeric = model_inputs(schema)
    keep = set(categorical + numeric)
    subset = schema_pb2.Schema()
    subset.CopyFrom(schema)
    del subset.feature[:]
    subset.feature.extend(f for f in schema.feature if f.name in keep)
    del subset.string_domain[:]
    return subset


def feature_roles(schema) -> dict[str, list[str]]:
    from tensorflow_metadata.proto.v0 import schema_pb2

    categorical, numeric = model_inputs(schema)
    integer = [f.name for f in schema.feature if f.name in numeric and f.type == schema_pb2.INT]
    return {"categorical": categorical, "numeric": numeric, "integer": integer}


def analyze(
    examples: Path, schema, config: TransformConfig, out_dir: Path, *, beam: BeamConfig | None = None
) -> dict[str, Any]:
    """Write the transform graph (TFTransformOutput layout) into out_dir, on the `beam` runner (default: the
    DirectRunner); returns the feature roles."""
    import apache_beam
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.public import tfxio

    options = pipeline_options(beam or BeamConfig())
    subset = input_schema(schema)
    roles = feature_roles(schema)
    preprocessing_fn = make_preprocessing_fn(
        roles["categorical"],
        roles["numeric"],
        roles["integer"],
        oov_buckets=config.oov_buckets,
        top_k=config.vocab_top_k,
    )
    source = tfxio.TFExampleRecord(examples_io.tfrecord_files(examples, "train"), schema=subset)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as temp,
        apache_beam.Pipeline(options=options) as pipeline,
        tft_beam.Context(temp_dir=temp, force_tf_compat_v1=False),
    ):
        raw = pipeline | "Read" >> source.BeamSource()
        transform_fn = (raw, source.TensorAdapterConfig()) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | "Write" >> tft_beam.WriteTransformFn(str(out_dir))
    _write_raw_metadata(subset, out_dir)
    layout = {**roles, "oov_buckets": config.oov_buckets * len(roles["categorical"]), "vocabulary": VOCABULARY}
    (out_dir / FEATURES_FILE).write_text(json.dumps(layout, indent=2) + "\n")
    return layout


def _write_raw_metadata(schema, out_dir: Path) -> None:
    """The raw input schema, where TFTransformOutput.raw_feature_spec() looks for it."""
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema), str(out_dir / "metadata"))
