"""The pipeline config composes the components' sections and gives each task its own, and what it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.evaluate.config import EvaluateTask
from components.examplegen.config import ExampleGenTask
from components.push.config import PushTask
from components.push.logic import training_parameters
from components.runtime import load_task_config
from components.train.config import TrainConfig
from components.transform.config import TransformTask
from components.validate.config import ValidateTask
from kfloop.config import load_config
from kfloop.errors import ConfigError
from pipelines.config import PipelineConfig

SMALL_PROFILE = Path(__file__).resolve().parents[2] / "pipelines" / "profiles" / "small.yaml"
TASK_MODELS = {
    "examplegen": ExampleGenTask,
    "validate": ValidateTask,
    "transform": TransformTask,
    "train": TrainConfig,
    "evaluate": EvaluateTask,
    "push": PushTask,
}


@pytest.fixture
def config() -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "registry": {"uri": "s3://models/kfloop"},
            "features": {"event_log": {"log_uri": "s3://events/log"}},
            "window": {"days": 3},
            "validation": {"drift_linf": 0.2},
            "train": {"epochs": 3},
            "evaluate": {"blessing": {"dr_margin": 0.002}},
            "beam": {"options": ["--job_name=kfloop-nightly"]},
        }
    )


def test_each_task_is_given_its_own_section_and_what_it_reads(config: PipelineConfig):
    tasks = config.tasks()
    assert tasks.examplegen.window.days == 3 and tasks.examplegen.examples == config.examples
    assert tasks.examplegen.features.event_log.log_uri == "s3://events/log"
    assert tasks.validate.validation.drift_linf == 0.2
    assert (tasks.transform.transform, tasks.train) == (config.transform, config.train)
    assert {task.beam.options[0] for task in (tasks.validate, tasks.transform, tasks.evaluate)} == {
        "--job_name=kfloop-nightly"
    }
    assert tasks.evaluate.evaluate.blessing.dr_margin == 0.002
    readers = (tasks.examplegen, tasks.validate, tasks.evaluate, tasks.push)
    assert {task.registry_uri for task in readers} == {"s3://models/kfloop"}


def test_the_card_records_the_training_sections_the_tasks_were_given(config: PipelineConfig):
    tasks = config.tasks()
    recorded = training_parameters(tasks.examplegen, tasks.transform, tasks.train, tasks.evaluate)
    assert set(recorded) == {"window", "examples", "transform", "train", "evaluate"}, "no paths, no registry"
    assert recorded["train"]["epochs"] == 3 and recorded["window"]["days"] == 3
    assert recorded["evaluate"]["blessing"]["dr_margin"] == 0.002


def test_the_pipeline_parameters_carry_each_task_config_as_json_its_component_reads_back(config: PipelineConfig):
    parameters = config.tasks().parameters()
    assert list(parameters) == [f"{task}_config" for task in TASK_MODELS]
    for task, model in TASK_MODELS.items():
        assert load_task_config(model, parameters[f"{task}_config"]) == getattr(config.tasks(), task)


def test_the_small_profile_keeps_its_layout():
    tasks = load_config(PipelineConfig, SMALL_PROFILE).tasks()
    assert tasks.examplegen.window.max_requests == 3000
    assert (tasks.train.epochs, tasks.train.hidden_units) == (2, [16])
    assert tasks.evaluate.evaluate.bootstrap_resamples == 200


@pytest.mark.parametrize(
    ("model", "text", "named"),
    [
        (TrainConfig, '{"epochs": 0}', "epochs: Input should be greater than or equal to 1"),
        (TrainConfig, '{"epoch": 2}', "epoch: Extra inputs are not permitted"),
        (PushTask, '{"parameters": {}}', "registry_uri: Field required"),
        (ValidateTask, "not json", "ValidateTask: (body)"),
    ],
)
def test_a_bad_task_config_is_refused_naming_the_field(model: type, text: str, named: str):
    with pytest.raises(ConfigError) as raised:
        load_task_config(model, text)
    assert named in raised.value.message
