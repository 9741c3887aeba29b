"""The pipeline config's `beam` section reaches every Beam pipeline: validate's TFDV statistics, transform's
tf.Transform analyze and evaluate's TFMA each run on the runner, mode and options it names (read back from the
task parameters as the components read them); bad options are refused, naming the field and the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from components.beam import BeamConfig, pipeline_options
from components.contract import DEFAULT_SCHEMA
from components.evaluate.config import EvaluateConfig, EvaluateTask
from components.examplegen.logic import generate
from components.runtime import load_task_config
from components.train.config import TrainConfig
from components.transform.config import TransformTask
from components.validate.config import ValidateTask
from kfloop.config import load_config
from kfloop.data import fetch_obd, import_obd
from kfloop.errors import ConfigError
from kfloop.eventlog import EventLog, EventLogConfig
from pipelines.config import PipelineConfig

pytest.importorskip("apache_beam", reason="the pipeline environment (Beam) is needed")

from tests.support.beam_runner import PATH, RecordingDirectRunner

pytestmark = pytest.mark.pipeline

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
PROBE = {"job_name": "kfloop-beam-options-probe", "labels": ["probe=kfloop"]}
BEAM = {
    "runner": PATH,
    "direct_running_mode": "multi_threading",
    "workers": 2,
    "options": ["--job_name=kfloop-beam-options-probe", "--labels=probe=kfloop"],
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    """The OBD `random` log in a fresh event log; a config reading its newest 800 requests, with the probe runner."""
    fetch_obd(DATA_DIR)
    root = tmp_path_factory.mktemp("beam")
    log = EventLogConfig(wal_dir=root / "wal", log_uri=str(root / "events"))
    with EventLog(log, writer_id="obd") as writer:
        import_obd(DATA_DIR, writer, logs=("random",), progress=lambda _: None)
    return PipelineConfig.model_validate(
        {
            "features": {
                "event_log": log.model_dump(mode="json"),
                "store": {"repo_dir": str(root / "feast"), "obd_data_dir": str(DATA_DIR)},
            },
            "registry": {"uri": str(root / "registry")},
            "window": {"max_requests": 800},
            "beam": BEAM,
        }
    )


def test_each_beam_task_is_given_the_beam_section_in_its_parameter(config: PipelineConfig):
    parameters = config.tasks().parameters()
    for task, model in (("validate", ValidateTask), ("transform", TransformTask), ("evaluate", EvaluateTask)):
        assert load_task_config(model, parameters[f"{task}_config"]).beam == config.beam
    assert config.beam.pipeline_args() == [
        f"--runner={PATH}",
        "--direct_running_mode=multi_threading",
        "--direct_num_workers=2",
        *BEAM["options"],
    ]


@pytest.mark.parametrize(
    ("beam", "named"),
    [
        ({"options": ["flink_master=host:8081"]}, "beam.options: Value error, 'flink_master=host:8081' is not of"),
        ({"options": ["--runner=FlinkRunner"]}, "--runner is set by the beam section's own field `runner`"),
        ({"runner": "Flonk"}, "beam.runner: Value error, 'Flonk' is not one of DirectRunner"),
        ({"workers": -1}, "beam.workers: Input should be greater than or equal to 0"),
        ({"direct_running_mode": "threads"}, "beam.direct_running_mode: Input should be 'in_memory'"),
    ],
)
def test_a_bad_beam_section_is_refused_naming_the_field(tmp_path: Path, beam: dict, named: str):
    import yaml

    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"beam": beam}))
    with pytest.raises(ConfigError) as raised:
        load_config(PipelineConfig, path)
    assert named in raised.value.message


def test_a_flag_beam_does_not_know_is_refused_instead_of_dropped():
    with pytest.raises(ConfigError) as raised:
        pipeline_options(BeamConfig(options=["--flink_mastr=flink:8081", "--flink_master=flink:8081"]))
    assert raised.value.message == "beam.options: --flink_mastr: not an option of any Beam pipeline options class"


@pytest.mark.timeout(1800)  # four steps' work in one test: a shared machine's load can take it past the default
def test_the_options_reach_the_statistics_analyze_and_tfma_pipelines(config: PipelineConfig, tmp_path: Path):
    from components.evaluate.logic import evaluate
    from components.train.logic import train
    from components.transform.logic import analyze
    from components.validate.logic import load_schema, validate

    parameters = config.tasks().parameters()
    validating = load_task_config(ValidateTask, parameters["validate_config"])
    transforming = load_task_config(TransformTask, parameters["transform_config"])
    evaluating = load_task_config(EvaluateTask, parameters["evaluate_config"])
    examples = tmp_path / "examples"
    generate(config.examplegen_task(), examples, now=datetime.now(UTC))
    RecordingDirectRunner.ran.clear()

    result, _, _ = validate(
        examples,
        config=validating.validation,
        schema_file=DEFAULT_SCHEMA,
        previous_stats=None,
        out_dir=tmp_path / "statistics",
        beam=validating.beam,
    )
    assert result.anomalies == []
    analyze(examples, load_schema(DEFAULT_SCHEMA), transforming.transform, tmp_path / "graph", beam=transforming.beam)
    train(examples, tmp_path / "graph", TrainConfig(epochs=1, hidden_units=[4], batch_size=512), tmp_path / "model")
    small = EvaluateConfig(bootstrap_resamples=100, min_slice_examples=10, min_slice_positives=1)
    evaluate(
        examples,
        tmp_path / "model",
        registry_uri=evaluating.registry_uri,
        config=small,
        out_dir=tmp_path / "evaluation",
        beam=evaluating.beam,
    )

    ran = {run.transforms[-1]: run for run in RecordingDirectRunner.ran}
    assert set(ran) == {"Write[eval]", "Write", "ExtractEvaluateAndWriteResults"}, "one pipeline per Beam step"
    assert "Statistics[train]" in ran["Write[eval]"].transforms and "Analyze" in ran["Write"].transforms
    for run in ran.values():
        assert run.options["runner"] == PATH
        assert (run.options["direct_running_mode"], run.options["direct_num_workers"]) == ("multi_threading", 2)
        assert {key: run.options[key] for key in PROBE} == PROBE
