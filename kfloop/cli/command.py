"""One `kfloop` subcommand: its words, the environment it runs in, its handler and its arguments."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from kfloop.cli.envs import Stack


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    stack: Stack
    handler: str
    """`module:function`, imported once the right environment runs; called with the parsed arguments."""
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] = field(default=lambda p: None)
