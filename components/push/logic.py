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
from components.evaluate.config import EvaluateTask
from components.examplegen.config import ExampleGenTask
from components.push.config import PushTask
from components.train.config import TrainConfig
from components.transform.config import TransformTask
from kfloop.errors import InvalidInput
from kfloop.model_contract import BASELINE_FILE, EXPLAINER_DIR, MODEL_DIR
from kfloop.registry import Blessing, Candidate, ModelRegistry

SPAN_KEYS = ("window_start", "window_end", "eval_from", "splits", "catalog_size", "impressions_by_source", "feedback")
"""What the card's `data` keeps of the Examples artifact's span."""


def training_parameters(
    examplegen: ExampleGenTask, transform: TransformTask, train: TrainConfig, evaluate: EvaluateTask
) -> dict[str, Any]:
    """What determines the model besides its data and code, as the tasks were given it (paths and names
    excluded, and the Beam runner, which changes where the steps run, not what they compute): the card records
    it and the version's fingerprint includes it."""
    sections = {
        "window": examplegen.window,
        "examples": examplegen.examples,
        "transform": transform.transform,
        "train": train,
        "evaluate": evaluate.evaluate,
    }
    return {name: section.model_dump(mode="json") for name, section in sections.items()}


def push(
    config: PushTask,
    *,
    parameters: dict[str, Any],
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
    from components.train.logic import TRAIN_INFO

    if force and not (operator.strip() and force_reason.strip()):
        raise InvalidInput("force needs the operator's name and a reason (both are recorded)")
    candidate = describe(
        parameters,
        examples=examples,
        statistics=statistics,
        evaluation=evaluation_dir / EVALUATION_FILE,
        code_version=code_version,
        pipeline_run=pipeline_run,
    )
    registry = ModelRegistry(config.registry_uri)
    files = {
        BASELINE_FILE: baseline,
        "statistics": statistics,
        EVALUATION_FILE: evaluation_dir / EVALUATION_FILE,
        TRAIN_INFO: model_dir / TRAIN_INFO,
    }
    result = registry.register(
        candidate, model_dir=model_dir / MODEL_DIR, explainer_dir=model_dir / EXPLAINER_DIR, files=files
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


def describe(
    parameters: dict[str, Any],
    *,
    examples: Path,
    statistics: Path,
    evaluation: Path,
    code_version: str,
    pipeline_run: str,
) -> Candidate:
    """What the card will say: data, schema and code versions, parameters, metrics, the verdict.

    Data that broke the schema never gets this far: it is refused here, whatever the verdict."""
    validation = json.loads((statistics / "validation.json").read_text())
    if validation["anomalies"]:
        raise InvalidInput(
            f"the data broke the schema ({len(validation['anomalies'])} anomalies): nothing is registered"
        )
    span = examples_io.read_span(examples)
    verdict = json.loads(evaluation.read_text())
    return Candidate(
        data_version=span["data_version"],
        schema_version=validation["schema_version"],
        code_version=code_version,
        parameters=parameters,
        blessing=Blessing.model_validate(verdict["blessing"]),
        data={key: span[key] for key in SPAN_KEYS if key in span},
        metrics=verdict["metrics"],
        ope=verdict["ope"],
        pipeline_run=pipeline_run,
    )
