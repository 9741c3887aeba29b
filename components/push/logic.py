"""Push: register every trained version with its model card; only a blessed one is offered for deployment.

KFP's local runner has no `dsl.If`, so the gate is here: the evaluator's verdict decides the state. An
unblessed version is registered (for the record and as a comparison point) but not deployable, unless an
operator forces it, with their name and a reason, both recorded. Idempotent: the same data, schema, code
and parameters register once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import examples_io
from kfloop.errors import InvalidInput
from kfloop.registry import Blessing, Candidate, ModelRegistry
from pipelines.config import PipelineConfig

BASELINE_FILE = "baseline.json"


def training_parameters(config: PipelineConfig) -> dict[str, Any]:
    """What determines the model besides its data and code (paths and names excluded)."""
    sections = ("window", "examples", "transform", "train", "evaluate")
    return {name: getattr(config, name).model_dump(mode="json") for name in sections}


def push(
    config: PipelineConfig,
    *,
    examples: Path,
    statistics: Path,
    baseline: Path,
    model_dir: Path,
    evaluation_dir: Path,
    code_version: str,
    force: bool = False,
    operator: str = "",
    force_reason: str = "",
    pipeline_run: str = "",
) -> dict[str, Any]:
    from components.evaluate.logic import EVALUATION_FILE
    from components.train.logic import EXPLAINER_DIR, SERVING_DIR, TRAIN_INFO

    if force and not (operator.strip() and force_reason.strip()):
        raise InvalidInput("force needs the operator's name and a reason (both are recorded)")
    validation = json.loads((statistics / "validation.json").read_text())
    if validation["anomalies"]:
        raise InvalidInput(
            f"the data broke the schema ({len(validation['anomalies'])} anomalies): nothing is registered"
        )
    span = examples_io.read_span(examples)
    evaluation = json.loads((evaluation_dir / EVALUATION_FILE).read_text())
    candidate = Candidate(
        data_version=span["data_version"],
        schema_version=validation["schema_version"],
        code_version=code_version,
        parameters=training_parameters(config),
        blessing=Blessing.model_validate(evaluation["blessing"]),
        data={
            key: span[key]
            for key in ("window_start", "window_end", "eval_from", "splits", "catalog_size")
            if key in span
        },
        metrics=evaluation["metrics"],
        ope=evaluation["ope"],
        pipeline_run=pipeline_run,
    )
    registry = ModelRegistry(config.registry.uri)
    files = {
        BASELINE_FILE: baseline,
        "statistics": statistics,
        EVALUATION_FILE: evaluation_dir / EVALUATION_FILE,
        TRAIN_INFO: model_dir / TRAIN_INFO,
    }
    result = registry.register(
        candidate, model_dir=model_dir / SERVING_DIR, explainer_dir=model_dir / EXPLAINER_DIR, files=files
    )
    status = result.status
    if force and not status.deployable:
        status = registry.force(result.version, operator=operator, reason=force_reason)
    return {
        "version": result.version,
        "created": result.created,
        "state": status.state.value,
        "deployable": status.deployable,
        "registry": registry.uri,
        "model_uri": registry.artifact_uri(result.version),
        "blessing": candidate.blessing.model_dump(mode="json"),
    }
