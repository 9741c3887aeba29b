"""The Beam runner every Beam step runs on (TFDV statistics, tf.Transform analyze, TFMA): the pipeline config's
`beam` section, given to each of those tasks, turned into the `PipelineOptions` of each `beam.Pipeline`.

As TFX's `beam_pipeline_args`: a runner and a list of `--flag=value` arguments, handed to Beam as they are. Locally
the DirectRunner; on a cluster a distributed runner (Flink, Spark, Dataflow) named with its own options
(pipelines/profiles/cluster.yaml, docs/beam.md).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from kfloop.config import StrictModel
from kfloop.errors import ConfigError

KNOWN_RUNNERS = ("DirectRunner", "FlinkRunner", "SparkRunner", "PortableRunner", "PrismRunner", "DataflowRunner")
_FLAG = re.compile(r"--[a-z][a-z0-9_]*(=.*)?", re.DOTALL)
_DOTTED = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+")
# Set by their own fields, so that one place says which runner and which local mode a run uses.
_OWN_FIELDS = {"--runner": "runner", "--direct_running_mode": "direct_running_mode", "--direct_num_workers": "workers"}


class BeamConfig(StrictModel):
    """Where and how the Beam steps run (TFDV statistics, tf.Transform analyze, TFMA)."""

    runner: str = "DirectRunner"
    """Beam runner: DirectRunner (this machine), FlinkRunner, SparkRunner, PortableRunner, PrismRunner,
    DataflowRunner, or the dotted path of a runner class (`package.module.ClassName`)."""
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "in_memory"
    """DirectRunner only: run bundles in this process (in_memory), in threads, or in worker processes. in_memory
    is the fastest here on the OBD sample (docs/beam.md has the measurements)."""
    workers: int = Field(default=1, ge=0)
    """DirectRunner only: parallel workers of multi_threading / multi_processing; 0 means one per CPU core."""
    options: list[str] = Field(default_factory=list)
    """More pipeline options, each `--flag=value` (or a bare `--flag` for a switch), passed to Beam as they are:
    e.g. `--flink_master=flink-jobmanager:8081`, `--environment_type=EXTERNAL`, `--project=...`."""

    @field_validator("runner")
    @classmethod
    def _a_runner(cls, value: str) -> str:
        if value in KNOWN_RUNNERS or _DOTTED.fullmatch(value):
            return value
        raise ValueError(f"{value!r} is not one of {', '.join(KNOWN_RUNNERS)} nor a dotted path to a runner class")

    @field_validator("options")
    @classmethod
    def _flags(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _FLAG.fullmatch(value):
                raise ValueError(f"{value!r} is not of the form --flag=value (lower-case flag, underscores)")
            flag = value.split("=", 1)[0]
            if flag in _OWN_FIELDS:
                raise ValueError(f"{flag} is set by the beam section's own field `{_OWN_FIELDS[flag]}`")
        return values

    def pipeline_args(self) -> list[str]:
        """The arguments of every Beam pipeline, as TFX's `beam_pipeline_args` (the DirectRunner's two are
        DirectOptions, which other runners ignore)."""
        direct = [f"--direct_running_mode={self.direct_running_mode}", f"--direct_num_workers={self.workers}"]
        return [f"--runner={self.runner}", *direct, *self.options]


def pipeline_options(config: BeamConfig) -> Any:
    """Beam's `PipelineOptions` from the section; a flag no Beam options class knows is an error naming it
    (Beam itself would drop it with a warning, and a misspelt `--flink_mastr` run locally by surprise)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(config.pipeline_args())
    known = options.get_all_options(drop_default=True)
    given = options.get_all_options(drop_default=True, retain_unknown_options=True)
    unknown = sorted(set(given) - set(known))
    if unknown:
        named = ", ".join(f"--{name}" for name in unknown)
        raise ConfigError(f"beam.options: {named}: not an option of any Beam pipeline options class")
    return options
