"""Propose a schema update for review: infer from a fresh span, apply the contract's rules, show the diff.

The committed schema (pipelines/schema/schema.pbtxt) never changes by itself: a person reads the diff
and replaces the file.
"""

from __future__ import annotations

import difflib
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from components import examples_io
from components.contract import schema_path
from components.examplegen.logic import generate
from components.validate.logic import propose_schema, schema_text, statistics
from pipelines.config import PipelineConfig


def propose(config: PipelineConfig, output: Path) -> tuple[Path, str]:
    """Write the proposal to `output`; return it and a unified diff against the committed schema."""
    current_file = schema_path(config.validation.schema_path)
    with tempfile.TemporaryDirectory() as folder:
        generate(config.examplegen_task(), Path(folder), now=datetime.now(UTC))
        stats = statistics(examples_io.read_split(folder, "train"), config.beam)
    text = schema_text(propose_schema(stats))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    current = current_file.read_text() if current_file.is_file() else ""
    diff = "".join(
        difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(current_file), str(output))
    )
    return output, diff
