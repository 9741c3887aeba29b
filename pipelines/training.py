"""The training pipeline: ExampleGen -> Validate -> Transform -> Train -> Evaluate -> Push.

`create_pipeline` is a pure factory: it reads no file and no environment. Everything a run depends on is a
pipeline parameter (each task's own configuration as JSON, `<task>_config`, plus the operator's force switch),
so the compiled YAML is one artifact whatever the deployment, and a run records exactly what it was given.
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
from pipelines.config import TaskConfigs

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
    tasks: TaskConfigs,
    base_image: str,
    pipeline_name: str,
    description: str = "kfloop: feedback events to a blessed ranker",
) -> Any:
    """The pipeline (a KFP GraphComponent) whose parameters default to `tasks`.

    Parameters: examplegen_config ... push_config (each task's configuration, `TaskConfigs.parameters()`),
    force / operator / force_reason (an operator offering an unblessed version for deployment), timings_dir
    (the bench's per-stage timings).
    """
    ops = {
        name: dsl.component(function, base_image=base_image, install_kfp_package=False)
        for name, function in COMPONENTS.items()
    }
    defaults = tasks.parameters()

    @dsl.pipeline(name=pipeline_name, description=description)
    def training_pipeline(
        examplegen_config: str = defaults["examplegen_config"],
        validate_config: str = defaults["validate_config"],
        transform_config: str = defaults["transform_config"],
        train_config: str = defaults["train_config"],
        evaluate_config: str = defaults["evaluate_config"],
        push_config: str = defaults["push_config"],
        force: bool = False,
        operator: str = "",
        force_reason: str = "",
        timings_dir: str = "",
    ) -> dsl.Artifact:
        configs = {
            "examplegen": examplegen_config,
            "validate": validate_config,
            "transform": transform_config,
            "train": train_config,
            "evaluate": evaluate_config,
            "push": push_config,
        }
        operator_says = {"force": force, "operator": operator, "force_reason": force_reason}
        return _wire(ops, configs, timings_dir, operator_says)

    return training_pipeline


def _wire(ops: dict[str, Any], configs: dict[str, Any], timings_dir: Any, operator_says: dict[str, Any]) -> Any:
    """The tasks and their artifacts' edges (inside the pipeline function); the push task's result."""

    def task(name: str, **inputs: Any) -> Any:
        return ops[name](config_json=configs[name], timings_dir=timings_dir, **inputs).set_display_name(name)

    examples = task("examplegen").outputs["examples"]
    validated = task("validate", examples=examples)
    graph = task("transform", examples=examples, statistics=validated.outputs["statistics"])
    model = task("train", examples=examples, transform_graph=graph.outputs["transform_graph"]).outputs["model"]
    evaluated = task("evaluate", examples=examples, model=model)
    trained_with = {f"{name}_config": configs[name] for name in ("examplegen", "transform", "train", "evaluate")}
    pushed = task(
        "push",
        **trained_with,
        **operator_says,
        pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        examples=examples,
        statistics=validated.outputs["statistics"],
        baseline=validated.outputs["baseline"],
        model=model,
        evaluation=evaluated.outputs["evaluation"],
    )
    return pushed.outputs["pushed"]
