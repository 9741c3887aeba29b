"""TFDV statistics of the examples' splits, computed by one Beam pipeline on the configured runner.

The pipeline carries the splits' Parquet paths, not their rows (rows inside a pipeline are pickled into its
definition: slow to build, and too big for a remote runner), and each worker reads its file. The numbers are
those of `tfdv.generate_statistics_from_dataframe`, which validation used before it ran on Beam: the rows are
typed the same way (bools as categorical ints, columns of other objects dropped) and the generators are the
same (sketch-based top-k and uniques). Only the order of equally frequent values in a rank histogram may differ.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from components import examples_io
from components.beam import BeamConfig, pipeline_options


def split_statistics(examples: Path, splits: tuple[str, ...], beam: BeamConfig | None = None) -> dict[str, Any]:
    """{split: DatasetFeatureStatisticsList} of an Examples artifact's splits."""
    files = {split: str(examples_io.split_dir(examples, split) / examples_io.PARQUET) for split in splits}
    return parquet_statistics(files, beam)


def frame_statistics(frame: pd.DataFrame, beam: BeamConfig | None = None) -> Any:
    """DatasetFeatureStatisticsList of one frame (written to a Parquet file first, then as a split)."""
    with tempfile.TemporaryDirectory(prefix="kfloop-frame-") as folder:
        path = Path(folder, examples_io.PARQUET)
        frame.to_parquet(path, index=False)
        return parquet_statistics({"frame": str(path)}, beam)["frame"]


def parquet_statistics(files: dict[str, str], beam: BeamConfig | None = None) -> dict[str, Any]:
    """{name: DatasetFeatureStatisticsList} of Parquet files, each a branch of one pipeline on the `beam` runner."""
    import apache_beam
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import statistics_pb2

    options = pipeline_options(beam or BeamConfig())
    with tempfile.TemporaryDirectory(prefix="kfloop-stats-") as folder:
        outputs = {name: Path(folder, f"{name}.pb") for name in files}
        with apache_beam.Pipeline(options=options) as pipeline:
            for name, path in files.items():
                _ = (
                    pipeline
                    | f"File[{name}]" >> apache_beam.Create([path])
                    | f"Read[{name}]" >> apache_beam.Map(rows_as_tfdv_reads)
                    | f"Statistics[{name}]" >> tfdv.GenerateStatistics(stats_options(path))
                    | f"Write[{name}]" >> tfdv.WriteStatisticsToBinaryFile(str(outputs[name]))
                )
        return {
            name: statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
            for name, path in outputs.items()
        }


def rows_as_tfdv_reads(path: str) -> Any:
    """A Parquet file's rows as the record batch generate_statistics_from_dataframe makes of its frame."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tfx_bsl.arrow import table_util

    frame = pq.read_table(path).to_pandas()
    kept = [name for name, dtype in frame.dtypes.items() if table_util.NumpyKindToArrowType(dtype.kind)]
    return table_util.CanonicalizeRecordBatch(pa.RecordBatch.from_pandas(frame[kept]))


def stats_options(path: str) -> Any:
    """The in-memory path's options: sketch-based top-k, and bool columns declared categorical ints."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    for column in pq.read_schema(path):
        if pa.types.is_boolean(column.type):
            schema.feature.add(name=column.name, type=schema_pb2.INT, bool_domain=schema_pb2.BoolDomain())
    return tfdv.StatsOptions(use_sketch_based_topk_uniques=True, schema=schema if schema.feature else None)
