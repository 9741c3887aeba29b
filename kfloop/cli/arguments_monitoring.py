"""The local system and the loop that watches it: `kfloop up | down | status`, the controller, `kfloop pause |
resume`. Their arguments and entries, beside kfloop/cli/app.py's list (argparse only, nothing heavy)."""

from __future__ import annotations

import argparse

from kfloop.cli.command import Command
from kfloop.cli.envs import Stack
from monitoring.controller import flags as controller_flags


def system(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the system's YAML (default: manifests/local/system.yaml)")
    p.add_argument("--state-dir", help="where the whole system keeps its state (overrides state_dir: .kfloop)")


def up(p: argparse.ArgumentParser) -> None:
    system(p)
    p.add_argument("--foreground", action="store_true", help="supervise from this process (Ctrl-C stops all)")


def status(p: argparse.ArgumentParser) -> None:
    system(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


COMMANDS: tuple[Command, ...] = (
    Command(("up",), Stack.SERVING, "kfloop.cli.commands.system:up", "start the whole local system", up),
    Command(("down",), Stack.SERVING, "kfloop.cli.commands.system:down", "stop what `kfloop up` started", system),
    Command(
        ("status",),
        Stack.SERVING,
        "kfloop.cli.commands.system:status",
        "health of each part, served versions and split, event counts, firing alerts, the controller's actions",
        status,
    ),
    Command(
        ("controller",),
        Stack.SERVING,
        "monitoring.controller.app:run_from_args",
        controller_flags.HELP,
        controller_flags.add_arguments,
    ),
    Command(
        ("pause",),
        Stack.CORE,
        "kfloop.cli.commands.controller:pause",
        "the controller's kill switch on: alerts are recorded, nothing is done",
        controller_flags.add_client_arguments,
    ),
    Command(
        ("resume",),
        Stack.CORE,
        "kfloop.cli.commands.controller:resume",
        "the controller's kill switch off: it acts on alerts again",
        controller_flags.add_client_arguments,
    ),
)
