"""Runs the training pipeline: compile to IR YAML, run locally with kfp.local, or submit to a KFP API.

The only module that reads configuration files (through the CLI) and talks to a runner; `training.py`
stays a pure factory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfloop.deploy.images import pipeline_image
from kfloop.errors import KfloopError
from pipelines.config import PipelineConfig
from pipelines.training import create_pipeline


class PipelineFailed(KfloopError):
    """A pipeline run failed; `details` say where its reports are."""

    http_status = 500


@dataclass(frozen=True)
class LocalRun:
    """What a local run registered (the push component's result)."""

    pushed: dict[str, Any]


def pipeline_of(config: PipelineConfig) -> Any:
    """The pipeline whose parameters default to this config's cut into tasks."""
    base_image = config.base_image or pipeline_image()
    return create_pipeline(tasks=config.tasks(), base_image=base_image, pipeline_name=config.name)


def compile_pipeline(config: PipelineConfig, output: Path) -> Path:
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_of(config), str(output))
    return output


def compiled_yaml(config: PipelineConfig) -> str:
    """The IR YAML as text (what `make generate` keeps in pipelines/compiled/training.yaml)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return compile_pipeline(config, Path(folder) / "training.yaml").read_text()


def with_absolute_paths(config: PipelineConfig) -> PipelineConfig:
    """Local paths made absolute: kfp.local's task processes must find the same files wherever they run."""
    data = config.model_dump(mode="json")

    def absolute(value: str) -> str:
        return value if "://" in value else str(Path(value).resolve())

    data["pipeline_root"] = absolute(data["pipeline_root"])
    data["registry"]["uri"] = absolute(data["registry"]["uri"])
    data["features"]["event_log"]["log_uri"] = absolute(data["features"]["event_log"]["log_uri"])
    data["features"]["event_log"]["wal_dir"] = absolute(data["features"]["event_log"]["wal_dir"])
    store = data["features"]["store"]
    for key in ("repo_dir", "obd_data_dir", "sqlite_path"):
        if store.get(key):
            store[key] = absolute(store[key])
    if data["validation"]["schema_path"]:
        data["validation"]["schema_path"] = absolute(data["validation"]["schema_path"])
    return PipelineConfig.model_validate(data)


def run_local(
    config: PipelineConfig,
    *,
    force: bool = False,
    operator: str = "",
    force_reason: str = "",
    timings_dir: str = "",
) -> LocalRun:
    """Run every step in this Python (the pipeline environment) with kfp.local; raises PipelineFailed."""
    from kfp import local

    config = with_absolute_paths(config)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=config.pipeline_root, raise_on_error=True)
    pipeline = pipeline_of(config)
    try:
        task = pipeline(
            **config.tasks().parameters(),
            force=force,
            operator=operator,
            force_reason=force_reason,
            timings_dir=timings_dir,
        )
    except RuntimeError as exc:
        raise PipelineFailed(_failure_message(config, exc), details={"registry": config.registry.uri}) from None
    pushed = json.loads(Path(task.output.path).read_text())
    return LocalRun(pushed=pushed)


def _failure_message(config: PipelineConfig, exc: Exception) -> str:
    rejected = Path(config.registry.uri) / "rejected"
    reports = sorted(rejected.glob("*/anomalies.md"), key=lambda p: p.stat().st_mtime) if rejected.is_dir() else []
    where = f" Newest anomaly report: {reports[-1]}" if reports else ""
    return f"the training pipeline failed: {exc}.{where}"


@dataclass(frozen=True)
class Submitted:
    """What `submit` created on the KFP API."""

    experiment_id: str
    pipeline_id: str
    version_id: str
    run_id: str = ""
    recurring_run_id: str = ""


def kfp_cron(schedule: str) -> str:
    """KFP's cron has 6 fields (seconds first); a 5-field crontab line gets second 0."""
    fields = schedule.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise KfloopError(f"--schedule must be a cron expression of 5 or 6 fields, got {schedule!r}")


def submit(
    config: PipelineConfig,
    *,
    host: str,
    schedule: str | None = None,
    experiment: str = "kfloop",
    version_name: str | None = None,
) -> Submitted:
    """Upload the pipeline (a new version if it exists), then start a run, or a recurring run on `schedule`."""
    import tempfile

    from kfp import Client

    client = Client(host=host)
    exp = client.create_experiment(name=experiment)
    params: dict[str, Any] = config.tasks().parameters()
    with tempfile.TemporaryDirectory() as folder:
        package = str(compile_pipeline(config, Path(folder) / "training.yaml"))
        pipeline_id = client.get_pipeline_id(config.name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(package, pipeline_name=config.name).pipeline_id
            versions = client.list_pipeline_versions(pipeline_id=pipeline_id).pipeline_versions or []
            version_id = versions[0].pipeline_version_id
        else:
            name = version_name or f"{config.name}-{_version_suffix()}"
            version_id = client.upload_pipeline_version(package, name, pipeline_id=pipeline_id).pipeline_version_id
    job_name = f"{config.name}-{_version_suffix()}"
    if schedule:
        recurring = client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=job_name,
            cron_expression=kfp_cron(schedule),
            params=params,
            pipeline_id=pipeline_id,
            version_id=version_id,
            max_concurrency=1,
            no_catchup=True,
        )
        return Submitted(exp.experiment_id, pipeline_id, version_id, recurring_run_id=recurring.recurring_run_id)
    run = client.run_pipeline(
        experiment_id=exp.experiment_id,
        job_name=job_name,
        params=params,
        pipeline_id=pipeline_id,
        version_id=version_id,
    )
    return Submitted(exp.experiment_id, pipeline_id, version_id, run_id=run.run_id)


def _version_suffix() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
