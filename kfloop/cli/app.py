"""`kfloop`: one command for people; each subcommand runs in the environment whose stack it needs.

Argument definitions live here (the local system's and its monitoring loop's in arguments_monitoring.py), a
deployable's in its own flags module (argparse only, shared with its `python -m` entry point), and import nothing
heavy; a handler (`module:function`, called with the parsed arguments) is imported only once the right
environment is running.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kfloop.cli import arguments_monitoring
from kfloop.cli.command import Command
from kfloop.cli.envs import Stack, has_stack, reexec_in

# Each deployable declares its flags once, in a light module of its own (argparse only), used here and by its
# `python -m` entry point; the handlers below are its entry functions, imported once the environment is right.
from serving.audit import flags as audit_flags
from serving.collector import flags as collector_flags
from serving.explainer import flags as explainer_flags
from serving.follower import flags as follower_flags
from serving.joiner.flags import add_arguments as _joiner
from serving.local.router import flags as router_flags
from serving.local.stack import flags as stack_flags
from serving.predictor import flags as predictor_flags
from serving.transformer import flags as transformer_flags


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (defaults apply where omitted)")


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="data", help="where fetched data lives (default: ./data)")


def _import_obd(p: argparse.ArgumentParser) -> None:
    _data_dir(p)
    _config(p)


def _features_materialize(p: argparse.ArgumentParser) -> None:
    _config(p)
    p.add_argument("--end", help="ISO 8601 time to compute and load up to (default: now)")


def _features_show(p: argparse.ArgumentParser) -> None:
    _config(p)
    p.add_argument("user_id", help="pseudonymous user id")
    p.add_argument("--items", help="comma-separated candidate item ids")


def _audit_store(p: argparse.ArgumentParser) -> None:
    _config(p)
    audit_flags.add_store_url(p)


def _audit_pull(p: argparse.ArgumentParser) -> None:
    _audit_store(p)
    p.add_argument("--since", required=True, help="from this time (RFC 3339, or YYYY-MM-DD = midnight UTC)")
    p.add_argument("--until", required=True, help="up to (not including) this time")
    p.add_argument("--model-version", help="only decisions of this model version")
    p.add_argument("--user", help="only this pseudonymous user")
    p.add_argument("--kind", action="append", help="record kind (decision, explanation, ...); repeatable")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet"], default="jsonl", help="export format")
    p.add_argument("--output", "-o", help="file to write (default: stdout; parquet needs a file)")


def _audit_verify(p: argparse.ArgumentParser) -> None:
    _audit_store(p)
    p.add_argument("--file", help="verify this export instead of the store")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet"], help="export format (default: from the name)")
    p.add_argument("--allow-gaps", action="store_true", help="a filtered export: check each row, not continuity")


def _audit_explain(p: argparse.ArgumentParser) -> None:
    _audit_store(p)
    p.add_argument("request_id", help="the decision to explain")
    p.add_argument("--explainer", help="module:factory building the explainer")


def _registry(p: argparse.ArgumentParser) -> None:
    _config(p)
    p.add_argument("--registry", help="model registry path or URI (overrides the config)")


def _pipeline_compile(p: argparse.ArgumentParser) -> None:
    _config(p)
    p.add_argument("--output", default="training.yaml", help="where to write the KFP IR YAML")


def _pipeline_run(p: argparse.ArgumentParser) -> None:
    _registry(p)
    p.add_argument("--local", action="store_true", help="run every step here with kfp.local")
    p.add_argument("--force", action="store_true", help="register as deployable even if not blessed (recorded)")
    p.add_argument("--operator", help="who forces (with --force)")
    p.add_argument("--reason", help="why (with --force)")
    p.add_argument("--timings-dir", help="write per-stage import/work timings here")


def _pipeline_submit(p: argparse.ArgumentParser) -> None:
    _config(p)
    p.add_argument("--host", required=True, help="the KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow")
    p.add_argument("--schedule", help="cron (5 or 6 fields): a recurring run instead of a single run")
    p.add_argument("--experiment", default="kfloop", help="KFP experiment name")


def _pipeline_propose_schema(p: argparse.ArgumentParser) -> None:
    _config(p)
    p.add_argument("--output", default="pipelines/schema/schema.proposed.pbtxt", help="where to write the proposal")


def _models_list(p: argparse.ArgumentParser) -> None:
    _registry(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _models_show(p: argparse.ArgumentParser) -> None:
    _registry(p)
    p.add_argument("version", help="a version id from `kfloop models list`")


def _models_force(p: argparse.ArgumentParser) -> None:
    _models_show(p)
    p.add_argument("--operator", required=True, help="who takes responsibility")
    p.add_argument("--reason", required=True, help="why an unblessed version may be deployed")


def _cluster(p: argparse.ArgumentParser) -> None:
    stack_flags.add_state_arguments(p)
    p.add_argument("--operator", help="who makes the change (default: the OS user)")
    p.add_argument("--cluster", action="store_true", help="also patch the InferenceService on the cluster")
    p.add_argument("--namespace", help="the InferenceService's namespace (with --cluster)")
    p.add_argument("--kubeconfig", help="kubeconfig file (with --cluster; default: in-cluster or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (with --cluster)")


def _deploy(p: argparse.ArgumentParser) -> None:
    _cluster(p)
    p.add_argument("version", help="a registered model version")
    p.add_argument("--canary", type=int, help="percent of traffic for the new version (0-100)")
    p.add_argument("--force", action="store_true", help="deploy an unblessed version (recorded)")
    p.add_argument("--reason", help="why (recorded; required with --force)")


def _rollback(p: argparse.ArgumentParser) -> None:
    _cluster(p)
    p.add_argument("--reason", help="why (recorded in the serving state's history)")


def _generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="fail if a generated file is out of date; write nothing")


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
    *arguments_monitoring.COMMANDS,
    Command(("generate",), Stack.CORE, "kfloop.cli.commands.generate:generate", "write generated files", _generate),
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
            sub = groups[prefix].add_parser(word, help=command.help if is_leaf else f"{word} commands")
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
