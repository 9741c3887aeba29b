"""The one `kfloop` command: routing to the right environment and argument parsing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kfloop.cli.app import COMMANDS, build_parser, command_for
from kfloop.cli.envs import Stack, has_stack


def test_every_command_parses_its_help():
    parser = build_parser()
    for command in COMMANDS:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([*command.words, "--help"])
        assert info.value.code == 0


def test_command_lookup_ignores_flags():
    assert command_for(["collector", "--port", "9"]).stack is Stack.SERVING
    assert command_for(["--x", "events", "schema"]).words == ("events", "schema")
    assert command_for(["nonsense"]) is None


def test_a_serving_command_runs_in_the_serving_environment_from_anywhere():
    """From the pipeline env, `kfloop collector --help` re-executes itself where kserve is importable."""
    result = subprocess.run(
        [sys.executable, "-m", "kfloop", "collector", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


def test_core_commands_run_in_place():
    assert has_stack(Stack.CORE)
    result = subprocess.run([sys.executable, "-m", "kfloop", "events", "schema"], capture_output=True, text=True)
    assert result.returncode == 0
    assert '"title": "kfloop feedback event, schema v1"' in result.stdout
