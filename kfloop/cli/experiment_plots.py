"""An experiment report's PNG plots (matplotlib, Agg), from `kfloop.cli.experiment_report.experiment_data` only.

Each plot marks the stages (dotted lines at their starts, named) and the decision (a solid line when the
experiment ended, labelled with its status).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PLOTS = {
    "ctr.png": "CTR per arm over time (95% intervals)",
    "statistic.png": "The test's statistic against its always-valid boundary",
    "split.png": "Traffic split over time",
}
_DECISION_COLOURS = {"promoted": "tab:green", "rolled_back": "tab:red"}


def render_plots(data: dict[str, Any], report_dir: Path) -> None:
    for name, plot in zip(PLOTS, (plot_ctr, plot_statistic, plot_split), strict=True):
        fig, ax = plt.subplots(figsize=(10, 3.6))
        plot(data, ax)
        _stages_and_decision(data, ax)
        ax.set_xlabel("seconds since the experiment began")
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(report_dir / name, dpi=90)
        plt.close(fig)


def plot_ctr(data: dict[str, Any], ax: Any) -> None:
    """Each tested stage's arms (CTR with Wilson bands); a shadow's off-policy values with their intervals."""
    for arm, colour, label in (("candidate", "tab:blue", "candidate"), ("control", "tab:gray", "production")):
        for index, stage in enumerate(_tested(data)):
            points = [p for p in stage["series"] if p.get(f"{arm}_ctr") is not None]
            x = [p["at_s"] for p in points]
            ax.plot(x, [100 * p[f"{arm}_ctr"] for p in points], color=colour, label=label if index == 0 else None)
            low = [100 * (p[f"{arm}_ctr_low"] or 0) for p in points]
            high = [100 * (p[f"{arm}_ctr_high"] or 0) for p in points]
            ax.fill_between(x, low, high, color=colour, alpha=0.2)
    for stage in data["stages"]:
        for point in stage["series"]:
            if point.get("kind") == "off_policy" and point.get("candidate") is not None:
                _off_policy_bars(ax, point, 0.01 * _span(data))
    ax.set(ylabel="clicks per slot (%)", title=PLOTS["ctr.png"])


def _off_policy_bars(ax: Any, point: dict[str, Any], apart: float) -> None:
    """The shadow's two values, side by side (`apart` seconds) at the time they were computed."""
    for offset, (policy, colour, label) in enumerate(
        (("candidate", "tab:blue", "shadow: candidate (off-policy)"), ("production", "tab:gray", "shadow: production"))
    ):
        value = 100 * point[policy]
        error = [[value - 100 * point[f"{policy}_low"]], [100 * point[f"{policy}_high"] - value]]
        x = point["at_s"] - apart / 2 + offset * apart
        ax.errorbar([x], [value], yerr=error, fmt="s", color=colour, capsize=4, label=label)


def _span(data: dict[str, Any]) -> float:
    """Seconds from the experiment's start to its decision (or its last evaluation)."""
    times = [p["at_s"] for s in data["stages"] for p in s["series"]] + [s["start_s"] for s in data["stages"]]
    if data["decision"]["at_s"] is not None:
        times.append(data["decision"]["at_s"])
    return max([1e-9, *times]) if times else 1.0


def plot_statistic(data: dict[str, Any], ax: Any) -> None:
    for index, stage in enumerate(_tested(data)):
        # before min_samples the boundary is infinite (stored as None): nothing to draw yet
        points = [p for p in stage["series"] if p.get("statistic") is not None and p.get("boundary") is not None]
        x = [p["at_s"] for p in points]
        first = index == 0
        ax.plot(x, [p["statistic"] for p in points], color="tab:blue", label="statistic z" if first else None)
        bound = [p["boundary"] for p in points]
        ax.plot(x, bound, "--", color="tab:green", label="boundary: non-inferior above" if first else None)
        ax.plot(x, [-b for b in bound], "--", color="tab:red", label="-boundary: inferior below" if first else None)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set(ylabel="z", title=PLOTS["statistic.png"])


def plot_split(data: dict[str, Any], ax: Any) -> None:
    steps = data["split"]
    if not steps:
        return
    x = [s["at_s"] for s in steps]
    candidate = [s["percent"] for s in steps]
    last = _span(data) * (1.05 if data["decision"]["at_s"] is not None else 1.0)  # the final share, shown
    x, candidate = [*x, last], [*candidate, candidate[-1]]
    ax.fill_between(x, 0, candidate, step="post", color="tab:blue", alpha=0.5, label="candidate")
    ax.fill_between(x, candidate, 100, step="post", color="tab:gray", alpha=0.3, label="production")
    for stage in data["stages"]:
        if stage["mode"] == "shadow":
            end = stage["end_s"] if stage["end_s"] is not None else last
            ax.axvspan(stage["start_s"], end, hatch="//", fill=False, edgecolor="tab:purple", label="shadow (mirrored)")
    ax.set(ylabel="share of users (%)", ylim=(0, 100), title=PLOTS["split.png"])


def _tested(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in data["stages"] if s["preregistration"] is not None]


def _stages_and_decision(data: dict[str, Any], ax: Any) -> None:
    for stage in data["stages"]:
        ax.axvline(stage["start_s"], color="black", linestyle=":", linewidth=0.8)
        ax.annotate(stage["name"], (stage["start_s"], 1), xycoords=("data", "axes fraction"), fontsize=7, va="top")
    decision = data["decision"]
    if decision["at_s"] is not None:
        colour = _DECISION_COLOURS.get(decision["status"], "black")
        ax.axvline(decision["at_s"], color=colour, linewidth=1.5, label=f"decision: {decision['status']}")
