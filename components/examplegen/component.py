"""KFP component: ExampleGen (see logic.py)."""

from kfp.dsl import Dataset, Output


def examplegen(config_json: str, timings_dir: str, examples: Output[Dataset]):
    """A window of the event log, labelled, joined with point-in-time features, split by time."""
    from components.runtime import StageTimer, load_pipeline_config

    timer = StageTimer("examplegen", timings_dir)
    import datetime
    import pathlib

    from components.examplegen import logic

    timer.imports_done()
    span = logic.generate(
        load_pipeline_config(config_json), pathlib.Path(examples.path), now=datetime.datetime.now(datetime.UTC)
    )
    examples.metadata.update({"data_version": span["data_version"], "split_names": ["train", "eval"], **span["splits"]})
    timer.finish(rows=sum(split["examples"] for split in span["splits"].values()))
