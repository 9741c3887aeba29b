"""Configuration of the training pipeline: one YAML file, validated here, composed of the components' sections.

Each component owns its section's model (`components/<name>/config.py`); this module composes them and cuts
the validated whole into what each task is given (`TaskConfigs`): its own section and what it reads, one
pipeline parameter per task. Pure pydantic: the CLI (any environment), the runner and the pipeline factory
share it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pydantic import Field

from components.beam import BeamConfig
from components.evaluate.config import EvaluateConfig, EvaluateTask
from components.examplegen.config import ExampleGenTask, ExamplesConfig, WindowConfig
from components.push.config import PushTask
from components.train.config import TrainConfig
from components.transform.config import TransformConfig, TransformTask
from components.validate.config import ValidateTask, ValidationConfig
from kfloop.config import StrictModel
from kfloop.features.config import FeaturesConfig


class RegistryConfig(StrictModel):
    """Where trained versions and their cards go."""

    uri: str = ".kfloop/registry"
    """A local folder, or an object store URI (s3://bucket/models, gs://...)."""


@dataclass(frozen=True)
class TaskConfigs:
    """What each task of the pipeline is given: its own section and what it reads."""

    examplegen: ExampleGenTask
    validate: ValidateTask
    transform: TransformTask
    train: TrainConfig
    evaluate: EvaluateTask
    push: PushTask

    def parameters(self) -> dict[str, str]:
        """{pipeline parameter: JSON}: one `<task>_config` parameter per task, in the pipeline's order."""
        return {f"{task.name}_config": getattr(self, task.name).model_dump_json() for task in fields(self)}


class PipelineConfig(StrictModel):
    """The training pipeline."""

    name: str = "kfloop-training"
    """Pipeline name (in KFP and in kfp.local's output folder)."""
    base_image: str | None = None
    """Image every component runs in on a cluster (the project installed in the pipeline environment); default:
    the kfloop-pipeline entry of manifests/base/kustomization.yaml `images:`, the one `make images` builds."""
    pipeline_root: str = ".kfloop/pipeline-root"
    """Where KFP keeps artifacts (local folder with kfp.local; an object store URI on a cluster)."""
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    """The event log and the Feast feature store (the same section the features side reads)."""
    examples: ExamplesConfig = Field(default_factory=ExamplesConfig)
    """How examples get their features."""
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    """The model registry."""
    window: WindowConfig = Field(default_factory=WindowConfig)
    """Training window and split."""
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    """Data validation."""
    transform: TransformConfig = Field(default_factory=TransformConfig)
    """tf.Transform."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training."""
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    """Evaluation and blessing."""
    beam: BeamConfig = Field(default_factory=BeamConfig)
    """The Beam runner and its options, given to every Beam step: validate's TFDV statistics, transform's
    analyze pass, evaluate's TFMA (as TFX's `beam_pipeline_args`)."""

    def examplegen_task(self) -> ExampleGenTask:
        return ExampleGenTask(
            window=self.window, examples=self.examples, features=self.features, registry_uri=self.registry.uri
        )

    def tasks(self) -> TaskConfigs:
        """Each task's input, cut from this config."""
        registry_uri, beam = self.registry.uri, self.beam
        return TaskConfigs(
            examplegen=self.examplegen_task(),
            validate=ValidateTask(validation=self.validation, registry_uri=registry_uri, beam=beam),
            transform=TransformTask(transform=self.transform, beam=beam),
            train=self.train,
            evaluate=EvaluateTask(evaluate=self.evaluate, registry_uri=registry_uri, beam=beam),
            push=PushTask(registry_uri=registry_uri),
        )
