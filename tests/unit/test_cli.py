"""The one `kfloop` command: routing to the right environment and argument parsing."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

from kfloop.cli.app import COMMANDS, build_parser, command_for
from kfloop.cli.envs import Stack, has_stack
from serving.common.flags import KSERVE_FLAGS, KSERVE_SWITCHES, hand_kserve_its_flags


def test_every_command_and_every_group_of_commands_prints_its_help():
    parser = build_parser()
    prefixes = {command.words[:depth] for command in COMMANDS for depth in range(len(command.words) + 1)}
    for words in sorted(prefixes):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([*words, "--help"])
        assert info.value.code == 0, words


def test_command_lookup_ignores_flags():
    assert command_for(["collector", "--port", "9"]).stack is Stack.SERVING
    assert command_for(["--x", "events", "schema"]).words == ("events", "schema")
    assert command_for(["nonsense"]) is None
    # what KServe's controller appends to a transformer's args: values are not words of the command
    assert command_for(["transformer", "--config=x", "--model_name", "m", "--http_port", "8080"]).words == (
        "transformer",
    )


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


# Each deployable's `python -m` entry point, beside the `kfloop` subcommand that runs the same code.
ENTRY_POINTS = {
    ("collector",): "serving.collector.app",
    ("audit", "sink"): "serving.audit.app",
    ("features", "follow"): "serving.follower.main",
    ("serve",): "serving.local.stack.main",
    ("router",): "serving.local.router.app",
    ("predictor",): "serving.predictor.main",
    ("transformer",): "serving.transformer.main",
    ("explainer",): "serving.explainer.main",
}
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z_-]*")


def _help_options(parse, capsys) -> set[str]:
    with pytest.raises(SystemExit) as info:
        parse()
    assert info.value.code == 0
    return set(_OPTION.findall(capsys.readouterr().out))


@pytest.mark.parametrize("words", list(ENTRY_POINTS), ids=" ".join)
def test_kfloop_and_python_m_take_the_same_flags(words, capsys):
    """One declaration per deployable: `kfloop WORDS --help` and `python -m ... --help` list the same flags, and
    the subcommand's handler is the entry point's own function."""
    module = importlib.import_module(ENTRY_POINTS[words])
    kfloop = _help_options(lambda: build_parser().parse_args([*words, "--help"]), capsys)
    python_m = _help_options(lambda: module.main(["--help"]), capsys)
    assert "--config" in kfloop and "--config-file" not in kfloop
    assert kfloop == python_m
    (command,) = [c for c in COMMANDS if c.words == words]
    assert command.handler == f"{ENTRY_POINTS[words]}:run_from_args"


def test_every_handler_of_an_installed_stack_exists():
    for command in COMMANDS:
        if has_stack(command.stack):
            module_name, function_name = command.handler.split(":")
            assert callable(getattr(importlib.import_module(module_name), function_name)), command.words


@pytest.mark.serving
def test_kfloop_declares_every_flag_of_kserve_model_server():
    """KServe's flags are declared without importing KServe; an upgrade that adds one fails here."""
    from kserve.model_server import parser

    actions = [a for a in parser._actions if a.option_strings]
    assert {a.option_strings[0][2:] for a in actions if a.nargs == 0} == set(KSERVE_SWITCHES)
    assert {a.option_strings[0][2:] for a in actions if a.nargs != 0} == set(KSERVE_FLAGS)


@pytest.mark.serving
def test_kserve_gets_its_own_flags_and_never_reads_ours(monkeypatch, capsys):
    """KServe parses sys.argv when kserve.model_server is first imported: as given, our --config reads as an
    abbreviation of its --configure_logging and the process exits; handed over, KServe sees what its controller
    passed and nothing of ours. (The local stack's integration test starts every role this way for real.)"""
    from kserve.model_server import parser as kserve_parser

    argv = ["transformer", "--config=/etc/kfloop/serving.yaml", "--predictor_host", "p.ns", "--workers", "3"]
    with pytest.raises(SystemExit) as info:
        kserve_parser.parse_known_args(argv)
    assert info.value.code == 2 and "--configure_logging" in capsys.readouterr().err
    args = build_parser().parse_args(argv)
    monkeypatch.setattr(sys, "argv", ["kfloop", *argv])
    with pytest.raises(RuntimeError, match="imported before"):  # too late: KServe has parsed already
        hand_kserve_its_flags(args)
    monkeypatch.delitem(sys.modules, "kserve.model_server")  # as in a fresh process
    hand_kserve_its_flags(args)
    assert sys.argv == ["kfloop", "--workers=3", "--predictor_host=p.ns"]
    seen, rest = kserve_parser.parse_known_args(sys.argv[1:])
    assert (seen.workers, seen.predictor_host, seen.configure_logging, rest) == (3, "p.ns", True, [])
