"""KFP component: ExampleGen (see logic.py)."""

from kfp.dsl import Dataset, Output


def examplegen(config_json: str, timings_dir: str, examples: Output[Dataset]):
    """A window of the event log, labelled, joined with point-in-time features, split by time.

    config_json: this task's ExampleGenTask (components/examplegen/config.py)."""
    from components.runtime import StageTimer, load_task_config

    timer = StageTimer("examplegen", timings_dir)
    import datetime
    import pathlib

    from components.examplegen import logic
    from components.examplegen.config import ExampleGenTask

    timer.imports_done()
    config = load_task_config(ExampleGenTask, config_json)
    span = logic.generate(config, pathlib.Path(examples.path), now=datetime.datetime.now(datetime.UTC))
    examples.metadata.update({"data_version": span["data_version"], "split_names": ["train", "eval"], **span["splits"]})
    timer.finish(rows=sum(split["examples"] for split in span["splits"].values()))
