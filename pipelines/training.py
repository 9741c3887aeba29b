"""The training pipeline: ExampleGen -> Validate -> Transform -> Train -> Evaluate -> Push.

`create_pipeline` is a pure factory: it reads no file and no environment. Everything a run depends on is a
pipeline parameter (the whole validated config as JSON, plus the operator's force switch), so the compiled
YAML is one artifact whatever the deployment, and a run records exactly what it was given.
(No `from __future__ import annotations` here: KFP reads the pipeline function's annotations as types.)
"""

from typing import Any

from kfp import dsl

from components.evaluate.component import evaluate
from components.examplegen.component import examplegen
from components.push.component import push
from components.train.component import train
from components.transform.component import transform
from components.validate.component import validate
from pipelines.config import PipelineConfig

COMPONENTS = {
    "examplegen": examplegen,
    "validate": validate,
    "transform": transform,
    "train": train,
    "evaluate": evaluate,
    "push": push,
}


def create_pipeline(
    *,
    config: PipelineConfig,
    base_image: str | None = None,
    pipeline_name: str | None = None,
    description: str = "kfloop: feedback events to a blessed ranker",
) -> Any:
    """The pipeline (a KFP GraphComponent) whose parameters default to `config`.

    Parameters: config_json (the whole PipelineConfig), force / operator / force_reason (an operator
    offering an unblessed version for deployment), timings_dir (the bench's per-stage timings).
    """
    image = base_image or config.base_image
    ops = {
        name: dsl.component(function, base_image=image, install_kfp_package=False)
        for name, function in COMPONENTS.items()
    }
    default_config = config.model_dump_json()

    @dsl.pipeline(name=pipeline_name or config.name, description=description)
    def training_pipeline(
        config_json: str = default_config,
        force: bool = False,
        operator: str = "",
        force_reason: str = "",
        timings_dir: str = "",
    ) -> dsl.Artifact:
        examples = ops["examplegen"](config_json=config_json, timings_dir=timings_dir).set_display_name("examplegen")
        validated = ops["validate"](
            config_json=config_json, timings_dir=timings_dir, examples=examples.outputs["examples"]
        ).set_display_name("validate")
        graph = ops["transform"](
            config_json=config_json,
            timings_dir=timings_dir,
            examples=examples.outputs["examples"],
            statistics=validated.outputs["statistics"],
        ).set_display_name("transform")
        trained = ops["train"](
            config_json=config_json,
            timings_dir=timings_dir,
            examples=examples.outputs["examples"],
            transform_graph=graph.outputs["transform_graph"],
        ).set_display_name("train")
        evaluated = ops["evaluate"](
            config_json=config_json,
            timings_dir=timings_dir,
            examples=examples.outputs["examples"],
            model=trained.outputs["model"],
        ).set_display_name("evaluate")
        pushed = ops["push"](
            config_json=config_json,
            timings_dir=timings_dir,
            force=force,
            operator=operator,
            force_reason=force_reason,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            examples=examples.outputs["examples"],
            statistics=validated.outputs["statistics"],
            baseline=validated.outputs["baseline"],
            model=trained.outputs["model"],
            evaluation=evaluated.outputs["evaluation"],
        ).set_display_name("push")
        return pushed.outputs["pushed"]

    return training_pipeline
