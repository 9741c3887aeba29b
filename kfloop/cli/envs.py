"""Which Python environment a command needs, and how to get there.

The pipeline stack (TFDV, tf.Transform, TFMA) and the serving stack (KServe, Alibi) cannot share one
environment, so `kfloop` re-executes itself in the sibling environment when the current one lacks the
stack a subcommand needs. In a container image only one stack is installed, and it runs in place.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from enum import StrEnum
from pathlib import Path


class Stack(StrEnum):
    CORE = "core"  # kfloop/ alone: runs anywhere
    PIPELINE = "pipeline"
    SERVING = "serving"


# A module that only that stack has.
_MARKER = {Stack.PIPELINE: "tensorflow_data_validation", Stack.SERVING: "kserve"}


def has_stack(stack: Stack) -> bool:
    return stack is Stack.CORE or importlib.util.find_spec(_MARKER[stack]) is not None


def venvs_dir() -> Path:
    """`$KFLOOP_VENVS`, else `.venvs` next to the source tree (where `make setup` puts them)."""
    configured = os.environ.get("KFLOOP_VENVS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / ".venvs"


def interpreter_for(stack: Stack) -> Path:
    python = venvs_dir() / stack.value / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"kfloop: this command needs the {stack.value} environment, which is not installed here "
            f"(looked for {python}). Run `make setup`, or set KFLOOP_VENVS."
        )
    return python


def reexec_in(stack: Stack, argv: list[str]) -> None:
    """Replace this process with `python -m kfloop ARGV` in the environment that has `stack`."""
    python = interpreter_for(stack)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, [str(python), "-m", "kfloop", *argv])
