"""Argument tables of the `kfloop` subcommands (argparse only: nothing heavy is imported here).

Each deployable declares its flags once, in a light module of its own, used here and by its `python -m` entry point.
"""

from __future__ import annotations

import argparse

from serving.audit import flags as audit_flags
from serving.local.stack import flags as stack_flags


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (defaults apply where omitted)")


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="data", help="where fetched data lives (default: ./data)")


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a DemoConfig YAML (kfloop/cli/demo/settings.py; defaults apply where omitted)")
    p.add_argument("--fast", action="store_true", help="small sizes and short windows (for tests)")
    p.add_argument("--report-dir", help="where the report is written (default: demo-report)")
    p.add_argument("--state-dir", help="the demo system's state, emptied at start (default: .kfloop/demo)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the recorded run")


def _import_obd(p: argparse.ArgumentParser) -> None:
    _data_dir(p)
    _config(p)


def _features_materialize(p: argparse.ArgumentParser) -> None:
    _config(p)
    p.add_argument("--end", help="ISO 8601 time to compute and load up to (default: now)")
    p.add_argument("--log-uri", help="where sealed Parquet is, path or URI (overrides event_log.log_uri)")


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
    p.add_argument(
        "--serving-config",
        help="the serving config whose `explainer` section is used (default: $KFLOOP_SERVING_CONFIG, else "
        "manifests/serving/serving.yaml)",
    )
    p.add_argument("--registry", help="model registry path or URI the explainer loads versions from (overrides it)")


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


def _system(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the system's YAML (default: manifests/local/system.yaml)")
    p.add_argument("--state-dir", help="where the whole system keeps its state (overrides state_dir: .kfloop)")


def _up(p: argparse.ArgumentParser) -> None:
    _system(p)
    p.add_argument("--foreground", action="store_true", help="supervise from this process (Ctrl-C stops all)")


def _status(p: argparse.ArgumentParser) -> None:
    _system(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _rollback(p: argparse.ArgumentParser) -> None:
    _cluster(p)
    p.add_argument("--reason", help="why (recorded in the serving state's history)")


def _simulate(p: argparse.ArgumentParser) -> None:
    _config(p)
    _data_dir(p)
    p.set_defaults(data_dir=None)  # the config's data_dir unless given
    p.add_argument("--transformer-url", help="the front door (default http://127.0.0.1:8080)")
    p.add_argument("--collector-url", help="the feedback collector (default http://127.0.0.1:8090)")
    p.add_argument("--rate", type=float, help="rankings per second, open loop (default 20)")
    p.add_argument("--duration", type=float, help="seconds to run (default 300 unless --requests)")
    p.add_argument("--requests", type=int, help="rankings to send (with --duration: whichever ends first)")
    p.add_argument("--max-in-flight", type=int, help="rankings waiting at most; beyond that one is skipped (64)")
    p.add_argument("--seed", type=int, help="users, their requests and clicks: the same seed, the same run (0)")
    p.add_argument("--world-seed", type=int, help="the click model's synthetic cohort x item interaction (0)")
    p.add_argument("--run-id", help="names the request and event ids and the output folder (default: new)")
    p.add_argument("--users", type=int, help="synthetic users drawn from the OBD cohorts (1000)")
    p.add_argument("--logit-shift", type=float, help="base-rate scale added to every click logit (2.0)")
    p.add_argument("--interaction-scale", type=float, help="spread of the cohort x item preferences (0.5)")
    p.add_argument("--scenario", help="steady (default) or shift")
    p.add_argument("--shift-at", type=float, help="shift: seconds into the run (60)")
    p.add_argument("--shift-share", type=float, help="shift: share of users whose preferences change (0.5)")
    p.add_argument(
        "--shift-kind", choices=["fatigue", "reshuffle"],
        help="shift: fatigue (users tire of the item categories shown most; default) or reshuffle (per user)",
    )  # fmt: skip
    p.add_argument(
        "--consent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send `consent` in ranking requests (default: send it)",
    )
    p.add_argument("--dwell", action="store_true", default=None, help="also send a dwell event per click")
    p.add_argument("--out-dir", help="runs are written to OUT_DIR/RUN_ID/ (default .kfloop/simulate)")
    p.add_argument("--quiet", action="store_true", help="no live progress line")


def _generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="fail if a generated file is out of date; write nothing")


def _experiments_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the controller's YAML, for its state_dir (default: manifests/controller/...)")
    p.add_argument("--db", help="the experiment store itself (default: {controller state_dir}/experiments.db)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _experiments_list(p: argparse.ArgumentParser) -> None:
    _experiments_store(p)
    p.add_argument("--limit", type=int, default=100, help="at most this many, newest first (default: 100)")


def _experiments_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="the experiment's id (exp-...)")
    _experiments_store(p)
    p.add_argument("--report", metavar="DIR", help="also write its HTML report with PNG plots to DIR")


def _images(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only", action="append", metavar="NAME", help="one image (kfloop-serving or kfloop-pipeline); repeatable"
    )
