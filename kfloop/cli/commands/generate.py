"""`kfloop generate`: files derived from code, committed so producers and reviewers can read them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _event_schema() -> str:
    from kfloop.events import event_json_schema

    return json.dumps(event_json_schema(), indent=2, sort_keys=True) + "\n"


def _training_pipeline() -> str:
    from pipelines.config import PipelineConfig
    from pipelines.runner import compiled_yaml

    return compiled_yaml(PipelineConfig())


def _monitoring_rules() -> dict[str, Callable[[], str]]:
    from monitoring import rulegen

    return rulegen.GENERATED


# path relative to the repo root -> function producing its content
GENERATED: dict[str, Callable[[], str]] = {
    "kfloop/events/event-v1.schema.json": _event_schema,
    "pipelines/compiled/training.yaml": _training_pipeline,
    **_monitoring_rules(),
}


def stale_files() -> list[str]:
    """Generated files whose committed content differs from what the code produces now."""
    stale = []
    for relative, produce in GENERATED.items():
        path = ROOT / relative
        if not path.exists() or path.read_text() != produce():
            stale.append(relative)
    return stale


def generate(args: argparse.Namespace) -> int:
    if args.check:
        stale = stale_files()
        for relative in stale:
            print(f"out of date: {relative} (run `make generate`)", file=sys.stderr)
        return 1 if stale else 0
    for relative, produce in GENERATED.items():
        (ROOT / relative).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / relative).write_text(produce())
        print(f"wrote {relative}")
    return 0
