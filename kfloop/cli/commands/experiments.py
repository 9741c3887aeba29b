"""`kfloop experiments list | show ID [--report DIR]`: the controller's experiments, read from its experiment store
(`{controller state_dir}/experiments.db`, kfloop.experiments.store; SQLite, safe to read while the controller
writes). `--report DIR` writes the experiment's HTML report with its plots (kfloop.cli.experiment_report).

Arguments (wired in kfloop/cli/app.py): --config FILE (the controller's YAML: its state_dir), --db PATH (the store
itself), --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kfloop.errors import KfloopError
from kfloop.experiments.store import ExperimentStore, Observation, Stage


def list_experiments(args: argparse.Namespace) -> int:
    try:
        with _store(args) as store:
            experiments = store.list_experiments(limit=args.limit)
    except KfloopError as exc:
        print(f"kfloop experiments list: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(e) for e in experiments], indent=2))
        return 0
    if not experiments:
        print("no experiments yet")
    for e in experiments:
        ended = f"{e.finished_at}" if e.finished_at else "running"
        print(f"{e.id}  {e.status:<11}  {e.model_version} vs {e.control_version}  {e.created_at} -> {ended}")
    return 0


def show(args: argparse.Namespace) -> int:
    try:
        with _store(args) as store:
            experiment = store.get(args.experiment)
            decisions = store.decisions(args.experiment)
            data = None
            if args.report:
                from kfloop.cli.experiment_report import experiment_data

                data = experiment_data(store, args.experiment)
    except KfloopError as exc:
        print(f"kfloop experiments show: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                asdict(experiment) | {"last": [asdict(o) if o else None for _, o in decisions]}, indent=2, default=str
            )
        )
    else:
        print(f"{experiment.id}: {experiment.model_version} vs {experiment.control_version}, {experiment.status}")
        print(f"  started {experiment.created_at}; ended {experiment.finished_at or '-'}: {experiment.reason or '-'}")
        if experiment.approved_by:
            print(f"  approved by {experiment.approved_by} at {experiment.approved_at}")
        for stage, last in decisions:
            print("  " + stage_line(stage, last))
    if data is not None:
        from kfloop.cli.experiment_report import write_report

        print(f"report: {write_report(data, Path(args.report))}")
    return 0


def stage_line(stage: Stage, last: Observation | None) -> str:
    """One stage: its share, how it ended, its gate's last numbers, its preregistration's digest."""
    ended = f"{stage.decision} -> {stage.outcome} at {stage.ended_at}" if stage.ended_at else "running"
    line = f"{stage.name:>10} ({stage.mode} {stage.percent}%): {stage.started_at} .. {ended}"
    if last is not None:
        line += f"; {_numbers(last.numbers)}"
    if stage.digest:
        line += f"; preregistration sha256 {stage.digest}"
    return line


def _numbers(numbers: dict[str, Any]) -> str:
    if numbers.get("kind") == "off_policy":
        if numbers.get("difference") is None:
            return f"off-policy: {numbers['matched']} matched slots, too few ({numbers['decision']})"
        return (
            f"off-policy candidate {numbers['candidate']:.4f} vs production {numbers['production']:.4f}, difference "
            f"[{numbers['difference_low']:.4f}, {numbers['difference_high']:.4f}] vs -{numbers['margin']} "
            f"({numbers['rows']} slots, {numbers['matched']} matched)"
        )
    return (
        f"candidate CTR {_f(numbers['candidate_ctr'], 4)} ({numbers['candidate_impressions']} impressions) vs "
        f"{_f(numbers['control_ctr'], 4)} ({numbers['control_impressions']}); z {_f(numbers['statistic'])} "
        f"boundary {_f(numbers['boundary'])}"
    )


def _f(value: float | None, digits: int = 2) -> str:
    """A number as printed; None (undefined or infinite, as the store keeps them) as "-"."""
    return "-" if value is None else f"{value:.{digits}f}"


def _store(args: argparse.Namespace) -> ExperimentStore:
    """The store the arguments name (--db, else the controller config's), which must exist: reading never
    creates one."""
    from kfloop.config import load_config
    from kfloop.errors import NotFound
    from monitoring.controller.config import DEFAULT_CONFIG, ControllerConfig

    if args.db:
        path = Path(args.db)
    else:
        config_file = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
        path = load_config(ControllerConfig, config_file).experiments_db
    if not path.exists():
        raise NotFound(f"no experiment store at {path} (the controller writes it once an experiment starts)")
    return ExperimentStore(path)
