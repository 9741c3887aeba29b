"""KFP component: tf.Transform analyze (see logic.py)."""

from kfp.dsl import Artifact, Dataset, Input, Output


def transform(
    config_json: str,
    timings_dir: str,
    examples: Input[Dataset],
    statistics: Input[Artifact],
    transform_graph: Output[Artifact],
):
    """Vocabularies and scaling analyzed on the training split; writes the transform graph.

    config_json: this task's TransformTask (components/transform/config.py)."""
    from components.runtime import StageTimer, load_task_config, quiet_tensorflow

    timer = StageTimer("transform", timings_dir)
    quiet_tensorflow()
    import pathlib

    import apache_beam  # noqa: F401  (the import is timed apart from the work)
    import tensorflow_transform  # noqa: F401

    from components.transform import logic
    from components.transform.config import TransformTask
    from components.validate.logic import load_schema

    timer.imports_done()
    config = load_task_config(TransformTask, config_json)
    schema = load_schema(pathlib.Path(statistics.path) / "schema.pbtxt")  # the schema the data was validated on
    layout = logic.analyze(
        pathlib.Path(examples.path), schema, config.transform, pathlib.Path(transform_graph.path), beam=config.beam
    )
    transform_graph.metadata.update({"categorical": len(layout["categorical"]), "numeric": len(layout["numeric"])})
    timer.finish()
