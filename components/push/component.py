"""KFP component: register the version with its card; the verdict gates deployment (see logic.py)."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def push(
    config_json: str,
    examplegen_config: str,
    transform_config: str,
    train_config: str,
    evaluate_config: str,
    timings_dir: str,
    force: bool,
    operator: str,
    force_reason: str,
    pipeline_run: str,
    examples: Input[Dataset],
    statistics: Input[Artifact],
    baseline: Input[Artifact],
    model: Input[Model],
    evaluation: Input[Artifact],
    pushed: Output[Artifact],
):
    """Every version is registered; only a blessed (or operator-forced) one is deployable. Idempotent.

    config_json: this task's PushTask (components/push/config.py); examplegen_config ... evaluate_config: the
    configurations those tasks ran with, recorded on the card."""
    from components.runtime import StageTimer, code_version, load_task_config

    timer = StageTimer("push", timings_dir)
    import json
    import pathlib

    from components.evaluate.config import EvaluateTask
    from components.examplegen.config import ExampleGenTask
    from components.push import logic
    from components.push.config import PushTask
    from components.train.config import TrainConfig
    from components.transform.config import TransformTask

    timer.imports_done()
    parameters = logic.training_parameters(
        load_task_config(ExampleGenTask, examplegen_config),
        load_task_config(TransformTask, transform_config),
        load_task_config(TrainConfig, train_config),
        load_task_config(EvaluateTask, evaluate_config),
    )
    result = logic.push(
        load_task_config(PushTask, config_json),
        parameters=parameters,
        examples=pathlib.Path(examples.path),
        statistics=pathlib.Path(statistics.path),
        baseline=pathlib.Path(baseline.path),
        model_dir=pathlib.Path(model.path),
        evaluation_dir=pathlib.Path(evaluation.path),
        code_version=code_version(),
        force=force,
        operator=operator,
        force_reason=force_reason,
        pipeline_run=pipeline_run,
    )
    pathlib.Path(pushed.path).write_text(json.dumps(result, indent=2) + "\n")
    pushed.metadata.update({k: result[k] for k in ("version", "state", "deployable", "created")})
    print(json.dumps(result, indent=2), flush=True)
    timer.finish()
