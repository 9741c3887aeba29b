"""KFP component: TFMA metrics, off-policy value, blessing (see logic.py)."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    config_json: str,
    timings_dir: str,
    examples: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    report: Output[Markdown],
    metrics: Output[Metrics],
):
    """Metrics by slice and the off-policy value against production (or the logging policy); the verdict.

    config_json: this task's EvaluateTask (components/evaluate/config.py)."""
    from components.runtime import StageTimer, load_task_config, quiet_tensorflow

    timer = StageTimer("evaluate", timings_dir)
    quiet_tensorflow()
    import pathlib

    import tensorflow_model_analysis  # noqa: F401  (the import is timed apart from the work)

    from components.evaluate import logic
    from components.evaluate.config import EvaluateTask

    timer.imports_done()
    config = load_task_config(EvaluateTask, config_json)
    result = logic.evaluate(
        pathlib.Path(examples.path),
        pathlib.Path(model.path),
        registry_uri=config.registry_uri,
        config=config.evaluate,
        out_dir=pathlib.Path(evaluation.path),
        beam=config.beam,
    )
    text = logic.report_markdown(result)
    pathlib.Path(report.path).write_text(text)
    print(text, flush=True)
    overall = result["metrics"]["slices"].get("overall", {}).get("models", {}).get("candidate", {})
    for name in ("auc", "binary_crossentropy", "calibration"):
        if overall.get(name) is not None:
            metrics.log_metric(name, overall[name])
    for estimator in ("ips", "snips", "dr"):
        metrics.log_metric(f"{estimator}_candidate", result["ope"][estimator]["candidate"]["value"])
        metrics.log_metric(f"{estimator}_reference", result["ope"][estimator]["reference"]["value"])
    metrics.log_metric("blessed", float(result["blessing"]["blessed"]))
    evaluation.metadata.update(
        {"blessed": result["blessing"]["blessed"], "low_evidence": result["blessing"]["low_evidence"]}
    )
    timer.finish()
