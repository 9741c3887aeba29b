"""KFP component: train the ranker (see logic.py)."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def train(
    config_json: str, timings_dir: str, examples: Input[Dataset], transform_graph: Input[Artifact], model: Output[Model]
):
    """Keras ranker with a position-bias term and an inverse-propensity-weighted loss; exports model + explainer.

    config_json: this task's TrainConfig (components/train/config.py)."""
    from components.runtime import StageTimer, load_task_config, quiet_tensorflow

    timer = StageTimer("train", timings_dir)
    quiet_tensorflow()
    import pathlib

    import tensorflow  # noqa: F401  (the import is timed apart from the work)
    import tensorflow_transform  # noqa: F401
    import tf_keras  # noqa: F401

    from components.train import logic
    from components.train.config import TrainConfig

    timer.imports_done()
    config = load_task_config(TrainConfig, config_json)
    info = logic.train(
        pathlib.Path(examples.path), pathlib.Path(transform_graph.path), config, pathlib.Path(model.path)
    )
    model.metadata.update({"examples": info["examples"], "final_loss": info["loss_by_epoch"][-1]})
    timer.finish()
