"""`kfloop`: one command for people; each subcommand runs in the environment whose stack it needs.

Argument definitions live in kfloop/cli/arguments.py, a deployable's in its own flags module (argparse only,
shared with its `python -m` entry point), and import nothing heavy; a handler (`module:function`, called with the
parsed arguments) is imported only once the right environment is running.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

# Argument tables live in kfloop/cli/arguments.py; each deployable declares its flags once, in a light module of
# its own (argparse only), used here and by its `python -m` entry point; handlers are imported once the
# environment is right.
from kfloop.cli.arguments import (
    _audit_explain,
    _audit_pull,
    _audit_verify,
    _cluster,
    _config,
    _data_dir,
    _demo,
    _deploy,
    _experiments_list,
    _experiments_show,
    _features_materialize,
    _features_show,
    _generate,
    _images,
    _import_obd,
    _models_force,
    _models_list,
    _models_show,
    _pipeline_compile,
    _pipeline_propose_schema,
    _pipeline_run,
    _pipeline_submit,
    _rollback,
    _simulate,
    _status,
    _system,
    _up,
)
from kfloop.cli.envs import Stack, has_stack, reexec_in
from monitoring.controller import flags as controller_flags
from serving.audit import flags as audit_flags
from serving.collector import flags as collector_flags
from serving.explainer import flags as explainer_flags
from serving.follower import flags as follower_flags
from serving.joiner.flags import add_arguments as _joiner
from serving.local.router import flags as router_flags
from serving.local.stack import flags as stack_flags
from serving.predictor import flags as predictor_flags
from serving.transformer import flags as transformer_flags


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    stack: Stack
    handler: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] = field(default=lambda p: None)


COMMANDS: tuple[Command, ...] = (
    Command(
        ("data", "fetch"), Stack.CORE, "kfloop.cli.commands.data:fetch", "download and verify the OBD sample", _data_dir
    ),
    Command(
        ("events", "import-obd"),
        Stack.CORE,
        "kfloop.cli.commands.data:import_obd",
        "turn the OBD sample into feedback events in the log",
        _import_obd,
    ),
    Command(("events", "schema"), Stack.CORE, "kfloop.cli.commands.events:schema", "print the event JSON Schema"),
    Command(
        ("events", "count"), Stack.CORE, "kfloop.cli.commands.events:count", "count logged events by type", _config
    ),
    Command(
        ("collector",),
        Stack.SERVING,
        "serving.collector.app:run_from_args",
        collector_flags.HELP,
        collector_flags.add_arguments,
    ),
    Command(
        ("joiner",),
        Stack.CORE,
        "serving.joiner.app:command",
        "join feedback to served impressions; serve counts per model version and variant on /metrics",
        _joiner,
    ),
    Command(
        ("features", "apply"),
        Stack.CORE,
        "kfloop.cli.commands.features:apply",
        "register the Feast feature repo and create the online tables",
        _config,
    ),
    Command(
        ("features", "materialize"),
        Stack.CORE,
        "kfloop.cli.commands.features:materialize",
        "recompute offline feature tables from the event log and load the online store",
        _features_materialize,
    ),
    Command(
        ("features", "follow"),
        Stack.CORE,
        "serving.follower.main:run_from_args",
        follower_flags.HELP,
        follower_flags.add_arguments,
    ),
    Command(
        ("features", "show"),
        Stack.CORE,
        "kfloop.cli.commands.features:show",
        "print a user's (and candidate items') online features",
        _features_show,
    ),
    Command(
        ("audit", "pull"),
        Stack.CORE,
        "kfloop.cli.commands.audit:pull",
        "export audit records with their chain hashes",
        _audit_pull,
    ),
    Command(
        ("audit", "verify"),
        Stack.CORE,
        "kfloop.cli.commands.audit:verify",
        "check the audit chain (store or export); names the first altered record",
        _audit_verify,
    ),
    Command(
        ("audit", "explain"),
        Stack.SERVING,
        "kfloop.cli.commands.audit:explain",
        "explain a past decision from its stored inputs and model version",
        _audit_explain,
    ),
    Command(
        ("audit", "sink"), Stack.SERVING, "serving.audit.app:run_from_args", audit_flags.HELP, audit_flags.add_arguments
    ),
    Command(
        ("pipeline", "compile"),
        Stack.PIPELINE,
        "kfloop.cli.commands.pipeline:compile_command",
        "write the training pipeline's KFP IR YAML",
        _pipeline_compile,
    ),
    Command(
        ("pipeline", "run"),
        Stack.PIPELINE,
        "kfloop.cli.commands.pipeline:run_command",
        "run the training pipeline (--local: kfp.local, here)",
        _pipeline_run,
    ),
    Command(
        ("pipeline", "submit"),
        Stack.PIPELINE,
        "kfloop.cli.commands.pipeline:submit_command",
        "submit the training pipeline to Kubeflow Pipelines (optionally on a schedule)",
        _pipeline_submit,
    ),
    Command(
        ("pipeline", "propose-schema"),
        Stack.PIPELINE,
        "kfloop.cli.commands.pipeline:propose_schema_command",
        "propose a schema update from current data, for review",
        _pipeline_propose_schema,
    ),
    Command(
        ("models", "list"), Stack.CORE, "kfloop.cli.commands.models:list_models", "list model versions", _models_list
    ),
    Command(
        ("models", "show"),
        Stack.CORE,
        "kfloop.cli.commands.models:show_model",
        "print a version's model card",
        _models_show,
    ),
    Command(
        ("models", "force"),
        Stack.CORE,
        "kfloop.cli.commands.models:force_model",
        "make an unblessed version deployable (recorded)",
        _models_force,
    ),
    Command(
        ("serve",), Stack.SERVING, "serving.local.stack.main:run_from_args", stack_flags.HELP, stack_flags.add_arguments
    ),
    Command(
        ("predictor",),
        Stack.SERVING,
        "serving.predictor.main:run_from_args",
        predictor_flags.HELP,
        predictor_flags.add_arguments,
    ),
    Command(
        ("transformer",),
        Stack.SERVING,
        "serving.transformer.main:run_from_args",
        transformer_flags.HELP,
        transformer_flags.add_arguments,
    ),
    Command(
        ("explainer",),
        Stack.SERVING,
        "serving.explainer.main:run_from_args",
        explainer_flags.HELP,
        explainer_flags.add_arguments,
    ),
    Command(
        ("router",),
        Stack.SERVING,
        "serving.local.router.app:run_from_args",
        router_flags.HELP,
        router_flags.add_arguments,
    ),
    Command(("deploy",), Stack.SERVING, "kfloop.cli.commands.serve:deploy", "deploy a version as canary", _deploy),
    Command(("promote",), Stack.SERVING, "kfloop.cli.commands.serve:promote", "make the canary stable", _cluster),
    Command(("rollback",), Stack.SERVING, "kfloop.cli.commands.serve:rollback", "drop the canary", _rollback),
    Command(
        ("serving", "status"),
        Stack.SERVING,
        "kfloop.cli.commands.serve:status",
        "print the serving state (stable, canary, split)",
        stack_flags.add_state_arguments,
    ),
    Command(("up",), Stack.SERVING, "kfloop.cli.commands.system:up", "start the whole local system", _up),
    Command(("down",), Stack.SERVING, "kfloop.cli.commands.system:down", "stop what `kfloop up` started", _system),
    Command(
        ("status",),
        Stack.SERVING,
        "kfloop.cli.commands.system:status",
        "health of each part, served versions and split, event counts, firing alerts, the controller's actions",
        _status,
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
        ("approve",),
        Stack.CORE,
        "kfloop.cli.commands.controller:approve",
        "approve an experiment's last step to 100% (when the controller's experiment.approval_before_full is on)",
        controller_flags.add_approve_arguments,
    ),
    Command(
        ("experiments", "list"),
        Stack.CORE,
        "kfloop.cli.commands.experiments:list_experiments",
        "the controller's experiments, newest first (from its experiment store)",
        _experiments_list,
    ),
    Command(
        ("experiments", "show"),
        Stack.SERVING,
        "kfloop.cli.commands.experiments:show",
        "one experiment's stages, decisions and preregistrations; --report DIR writes its HTML report with plots",
        _experiments_show,
    ),
    Command(
        ("resume",),
        Stack.CORE,
        "kfloop.cli.commands.controller:resume",
        "the controller's kill switch off: it acts on alerts again",
        controller_flags.add_client_arguments,
    ),
    Command(
        ("simulate",),
        Stack.CORE,
        "kfloop.cli.commands.simulate:simulate",
        "drive the running system with synthetic OBD users (rankings and clicks; ground truth kept)",
        _simulate,
    ),
    Command(
        ("demo",),
        Stack.SERVING,
        "kfloop.cli.commands.demo:demo",
        "run the whole feedback loop on one machine (shift, retrain, promote, a bad version rolled back) and report",
        _demo,
    ),
    Command(("generate",), Stack.CORE, "kfloop.cli.commands.generate:generate", "write generated files", _generate),
    Command(
        ("images", "build"),
        Stack.CORE,
        "kfloop.cli.commands.images:build",
        "build the serving and pipeline images (docker, podman or buildah) and print their sizes",
        _images,
    ),
    Command(
        ("images", "test"),
        Stack.CORE,
        "kfloop.cli.commands.images:test",
        "smoke-run the built images (kfloop --help, the model server, the TFX libraries)",
        _images,
    ),
)


def command_for(argv: list[str]) -> Command | None:
    """The command named by the leading words of argv (flags ignored), if any."""
    words = tuple(a for a in argv if not a.startswith("-"))
    for command in COMMANDS:
        if words[: len(command.words)] == command.words:
            return command
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kfloop", description="Keep a ranker learning from its users' feedback.")
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {(): parser.add_subparsers(dest="cmd", metavar="")}
    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for command in COMMANDS:
        for depth in range(1, len(command.words) + 1):
            prefix, word = command.words[: depth - 1], command.words[depth - 1]
            key = command.words[:depth]
            if key in parsers:
                continue
            is_leaf = depth == len(command.words)
            text = command.help.replace("%", "%%") if is_leaf else f"{word} commands"  # argparse %-formats help
            sub = groups[prefix].add_parser(word, help=text)
            parsers[key] = sub
            if is_leaf:
                command.arguments(sub)
                sub.set_defaults(_command=command)
            else:
                groups[key] = sub.add_subparsers(dest=f"cmd_{depth}", metavar="")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = command_for(argv)
    if command is not None and not has_stack(command.stack):
        reexec_in(command.stack, argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    chosen: Command | None = getattr(args, "_command", None)
    if chosen is None:
        parser.print_help()
        return 2
    module_name, function_name = chosen.handler.split(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    return int(handler(args) or 0)
