"""KFP component: statistics, schema validation, drift and skew (see logic.py)."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output


def validate(
    config_json: str,
    timings_dir: str,
    examples: Input[Dataset],
    statistics: Output[Artifact],
    baseline: Output[Artifact],
    report: Output[Markdown],
    drift: Output[Metrics],
):
    """TFDV statistics; anomalies against the committed schema fail the run with a Markdown report.

    config_json: this task's ValidateTask (components/validate/config.py)."""
    from components.runtime import StageTimer, load_task_config, quiet_tensorflow

    timer = StageTimer("validate", timings_dir)
    quiet_tensorflow()
    import json
    import pathlib
    import shutil
    import tempfile

    import tensorflow_data_validation  # noqa: F401  (the import is timed apart from the work)

    from components.contract import schema_path
    from components.validate import logic
    from components.validate.config import ValidateTask

    timer.imports_done()
    config = load_task_config(ValidateTask, config_json)
    schema_file = schema_path(config.validation.schema_path)
    out = pathlib.Path(statistics.path)
    with tempfile.TemporaryDirectory() as workdir:
        previous = logic.previous_statistics(config.registry_uri, pathlib.Path(workdir))
        result, text, histograms = logic.validate(
            pathlib.Path(examples.path),
            config=config.validation,
            schema_file=schema_file,
            previous_stats=previous,
            out_dir=out,
            beam=config.beam,
        )
    shutil.copy(schema_file, out / "schema.pbtxt")
    pathlib.Path(report.path).write_text(text)
    print(text, flush=True)
    for measurement in result.drift + result.skew:
        kind = "drift" if measurement in result.drift else "skew"
        drift.log_metric(f"{kind}_{measurement['feature']}", measurement["value"])
    drift.log_metric("anomalies", len(result.anomalies))
    if result.anomalies:
        error = logic.reject_span(pathlib.Path(examples.path), result, text, config.registry_uri)
        timer.finish(anomalies=len(result.anomalies))
        raise error
    if config.validation.fail_on_drift and result.flagged:
        timer.finish(flagged=len(result.flagged))
        raise logic.DataValidationError(f"drift or skew over threshold: {[m['feature'] for m in result.flagged]}")
    pathlib.Path(baseline.path).write_text(json.dumps(histograms, indent=2) + "\n")
    timer.finish()
