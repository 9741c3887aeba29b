"""A Beam runner for tests: Beam's own DirectRunner, which also keeps what each pipeline it ran was given.

Named in a config's `beam.runner` by its dotted path (Beam imports runners by path), so a step's pipeline runs
for real and the test then reads the options that reached it and the pipeline's top-level transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from apache_beam.runners.direct.direct_runner import DirectRunner

PATH = f"{__name__}.RecordingDirectRunner"


@dataclass(frozen=True)
class Ran:
    """One pipeline run: its options (those not at Beam's defaults) and its top-level transforms' labels."""

    options: dict[str, Any]
    transforms: list[str]


class RecordingDirectRunner(DirectRunner):
    """The DirectRunner, recording each run in `ran` (this process's runs, in order)."""

    ran: ClassVar[list[Ran]] = []

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        top = pipeline.transforms_stack[0].parts
        RecordingDirectRunner.ran.append(
            Ran(options.get_all_options(drop_default=True), [part.full_label for part in top])
        )
        return super().run_pipeline(pipeline, options)
