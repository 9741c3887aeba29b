"""One experiment's report: its numbers from the experiment store (kfloop.experiments.store), PNG plots
(kfloop.cli.experiment_plots) and an index.html beside report.json.

    data = experiment_data(store, "exp-...")        # JSON-ready; times in seconds since the experiment began
    index = write_report(data, Path("report-dir"))   # report.json, ctr.png, statistic.png, split.png, index.html

The page shows each arm's CTR over time with 95% intervals, the test's statistic against its always-valid
boundary, the traffic split over time, the shadow's off-policy comparison, the decision and when, and each
stage's preregistration with its sha256 (the digest the audit trail names).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from kfloop.audit.canonical import parse_rfc3339
from kfloop.cli.demo.page import STYLE, table
from kfloop.experiments.shadow import VALUE_FIELDS
from kfloop.experiments.store import Experiment, ExperimentStore, Stage

FULL = 100
_Z95 = 1.959964


def experiment_data(store: ExperimentStore, experiment_id: str) -> dict[str, Any]:
    """Everything the report shows, from the store alone (NotFound for an unknown id)."""
    experiment = store.get(experiment_id)
    began = parse_rfc3339(experiment.created_at)

    def seconds(at: str | None) -> float | None:
        return None if at is None else (parse_rfc3339(at) - began).total_seconds()

    stages = [_stage_data(store, experiment.id, stage, seconds) for stage in experiment.stages]
    header = {k: v for k, v in asdict(experiment).items() if k != "stages"}
    return {
        "experiment": header,
        "stages": stages,
        "split": split_over_time(experiment, stages, seconds(experiment.finished_at)),
        "decision": {
            "status": experiment.status,
            "at": experiment.finished_at,
            "at_s": seconds(experiment.finished_at),
            "reason": experiment.reason,
        },
    }


def _stage_data(store: ExperimentStore, experiment_id: str, stage: Stage, seconds: Any) -> dict[str, Any]:
    series = [
        {"at": o.at, "at_s": seconds(o.at), "decision": o.decision, **_with_intervals(o.numbers)}
        for o in store.series(experiment_id, stage.index)
    ]
    prereg = stage.preregistration.model_dump(mode="json") if stage.preregistration is not None else None
    return {
        "index": stage.index,
        "name": stage.name,
        "mode": stage.mode,
        "percent": stage.percent,
        "started_at": stage.started_at,
        "start_s": seconds(stage.started_at),
        "ended_at": stage.ended_at,
        "end_s": seconds(stage.ended_at),
        "decision": stage.decision,
        "outcome": stage.outcome,
        "digest": stage.digest,
        "preregistration": prereg,
        "gate": stage.gate,
        "series": series,
    }


def _with_intervals(numbers: dict[str, Any]) -> dict[str, Any]:
    """A test's numbers with each arm's 95% Wilson interval on its CTR (a shadow's carry their own)."""
    if numbers.get("kind") == "off_policy":
        return numbers
    added = dict(numbers)
    for arm in ("candidate", "control"):
        low, high = wilson(numbers.get(f"{arm}_ctr"), numbers.get(f"{arm}_impressions") or 0)
        added[f"{arm}_ctr_low"], added[f"{arm}_ctr_high"] = low, high
    return added


def wilson(ctr: float | None, n: int) -> tuple[float | None, float | None]:
    """The 95% Wilson score interval of a click rate (None without impressions)."""
    if ctr is None or n <= 0:
        return None, None
    z2 = _Z95 * _Z95
    centre = (ctr + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(ctr * (1 - ctr) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def split_over_time(experiment: Experiment, stages: list[dict[str, Any]], end_s: float | None) -> list[dict[str, Any]]:
    """The candidate's share of users as a step function: each stage's percent from its start (a shadow's 0:
    mirrored, never served), then 100 after a promotion or 0 after anything else."""
    steps = [{"at_s": s["start_s"], "percent": s["percent"], "mode": s["mode"], "stage": s["name"]} for s in stages]
    if end_s is not None:
        final = FULL if experiment.status == "promoted" else 0
        steps.append({"at_s": end_s, "percent": final, "mode": experiment.status, "stage": experiment.status})
    return steps


def write_report(data: dict[str, Any], report_dir: Path) -> Path:
    """report.json, the plots and index.html in `report_dir` (created); the path of index.html."""
    from kfloop.cli.experiment_plots import PLOTS, render_plots

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(data, indent=2, sort_keys=True))
    render_plots(data, report_dir)
    index = report_dir / "index.html"
    index.write_text(page(data, PLOTS))
    return index


def page(data: dict[str, Any], plots: dict[str, str]) -> str:
    experiment, decision = data["experiment"], data["decision"]
    title = f"experiment {experiment['id']}"
    stage_rows = [
        {k: s[k] for k in ("name", "mode", "percent", "started_at", "ended_at", "decision", "outcome")}
        for s in data["stages"]
    ]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>kfloop {escape(title)}</h1>",
        f"<p>Candidate <b>{escape(experiment['model_version'])}</b> against production "
        f"<b>{escape(experiment['control_version'])}</b>, started {escape(experiment['created_at'])}.</p>",
        f"<h2>Decision: {escape(decision['status'])}</h2>",
        f"<p>{escape(decision['at'] or 'not yet')}: {escape(decision['reason'] or 'running')}</p>",
        "<h2>Stages</h2>",
        table(stage_rows, list(stage_rows[0]) if stage_rows else []),
        "<h2>Preregistrations</h2>",
        table(
            _preregistrations(data),
            ["stage", "sha256", "margin", "alpha", "min_samples", "max_samples", "on_max_sample", "created_at"],
        ),
        "<h2>Shadow: off-policy comparison</h2>",
        table(_off_policy_rows(data), _OFF_POLICY_COLUMNS),
    ]
    for name, caption in plots.items():
        parts.append(f"<h2>{escape(caption)}</h2><img id='plot-{name[:-4]}' src='{name}' alt='{escape(caption)}'>")
    parts += ["<p>All numbers are in <a href='report.json'>report.json</a>.</p>", "</body></html>"]
    return "\n".join(parts)


_COUNTS = ["requests", "rows", "matched", "clicks"]
_OFF_POLICY_COLUMNS = ["stage", "decision", "estimator", *_COUNTS, *VALUE_FIELDS, "margin"]


def _preregistrations(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"stage": s["name"], "sha256": s["digest"], **s["preregistration"]}
        for s in data["stages"]
        if s["preregistration"]
    ]


def _off_policy_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"stage": s["name"], **point}
        for s in data["stages"]
        for point in s["series"]
        if point.get("kind") == "off_policy"
    ]
