"""The Examples artifact every component passes along, mirroring TFX's layout.

    {examples}/Split-train/data_tfrecord-00000-of-00001.gz   tf.train.Example records (gzip TFRecord)
    {examples}/Split-train/data.parquet                      the same rows, columnar, for statistics and evaluation
    {examples}/Split-eval/...
    {examples}/Split-eval/candidates.parquet                 every catalog item in each eval request's context
    {examples}/span.json                                     window, split, counts and the data version

TFRecords are written without TensorFlow (tfx_bsl encodes, the framing is TFRecord's own), so the example
generator does not pay TensorFlow's import.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SPLITS = ("train", "eval")
SPAN_FILE = "span.json"
PARQUET = "data.parquet"
TFRECORD = "data_tfrecord-00000-of-00001.gz"
CANDIDATES = "candidates.parquet"


def split_dir(examples: Path | str, split: str) -> Path:
    return Path(examples) / f"Split-{split}"


def tfrecord_files(examples: Path | str, split: str) -> list[str]:
    return sorted(str(p) for p in split_dir(examples, split).glob("data_tfrecord-*"))


def read_split(examples: Path | str, split: str) -> pd.DataFrame:
    return pq.read_table(split_dir(examples, split) / PARQUET).to_pandas()


def read_span(examples: Path | str) -> dict[str, Any]:
    return json.loads((Path(examples) / SPAN_FILE).read_text())


def write_split(examples: Path | str, split: str, frame: pd.DataFrame) -> None:
    folder = split_dir(examples, split)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, folder / PARQUET)
    write_tfrecord(folder / TFRECORD, encode_examples(table))


def write_candidates(examples: Path | str, frame: pd.DataFrame) -> None:
    folder = split_dir(examples, "eval")
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / CANDIDATES)


def read_candidates(examples: Path | str) -> pd.DataFrame:
    return pq.read_table(split_dir(examples, "eval") / CANDIDATES).to_pandas()


def write_span(examples: Path | str, span: dict[str, Any]) -> None:
    Path(examples, SPAN_FILE).write_text(json.dumps(span, indent=2, sort_keys=True) + "\n")


def encode_examples(table: pa.Table) -> list[bytes]:
    """Serialized tf.train.Example per row; a null value is a feature without values (missing)."""
    from tfx_bsl.coders import example_coder

    columns = [_as_list_array(table.column(name).combine_chunks()) for name in table.column_names]
    batch = pa.RecordBatch.from_arrays(columns, table.column_names)
    return example_coder.RecordBatchToExamples(batch) if table.num_rows else []


def _as_list_array(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = values.cast(pa.large_binary())
    elif pa.types.is_integer(values.type) or pa.types.is_boolean(values.type):
        values = values.cast(pa.int64())
    elif pa.types.is_floating(values.type):
        values = values.cast(pa.float32())
    else:
        raise TypeError(f"cannot encode a {values.type} column as a tf.train.Example feature")
    offsets = pa.array(range(len(values) + 1), type=pa.int64())
    return pa.LargeListArray.from_arrays(offsets, values, mask=values.is_null())


def write_tfrecord(path: Path, records: list[bytes]) -> None:
    """Gzip TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data."""
    with gzip.open(path, "wb", compresslevel=6) as handle:
        for record in records:
            length = struct.pack("<Q", len(record))
            handle.write(
                length + struct.pack("<I", _masked_crc(length)) + record + struct.pack("<I", _masked_crc(record))
            )


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
