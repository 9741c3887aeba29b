"""The report's page: four PNG plots (matplotlib, Agg) and index.html, from report.json's numbers only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PLOTS = ("ctr.png", "split.png", "timeline.png", "ope.png")
MARK_STYLE = {
    "shift": ("preference shift", "tab:red"),
    "detected": ("retrain decided", "tab:orange"),
    "candidate_deployed": ("candidate canary", "tab:purple"),
    "promoted": ("promoted", "tab:green"),
    "bad_deployed": ("bad version forced", "black"),
    "rolled_back": ("rolled back", "tab:gray"),
}


def _marks(ax: Any, marks: dict[str, float | None]) -> None:
    for key, (label, color) in MARK_STYLE.items():
        if marks.get(key) is not None:
            ax.axvline(marks[key], color=color, linestyle="--", linewidth=1, label=label)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_ctr(report: dict[str, Any], path: Path) -> None:
    bins = report["ctr_bins"]
    mid = [(b["start_s"] + b["end_s"]) / 2 for b in bins]
    fig, ax = plt.subplots(figsize=(10, 5))
    series = (
        ("loop_expected_ctr", "closed loop (expected, ground truth)", "-"),
        ("loop_ctr", "closed loop (realized clicks)", ":"),
        ("v1_expected_ctr", "never-retrained v1 (expected, same users and times)", "-"),
    )
    for key, label, style in series:
        ax.plot(mid, [100 * (b[key] or 0) for b in bins], style, marker=".", label=label)
    _marks(ax, report["marks"])
    ax.set(xlabel="seconds since traffic began", ylabel="CTR per slot (%)", title="Online CTR")
    # below the axes: inside, it hid the pre-shift curves
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    _save(fig, path)


def plot_split(report: dict[str, Any], path: Path) -> None:
    bins = report["ctr_bins"]
    versions = sorted({v for b in bins for v in b["split"]})
    fig, ax = plt.subplots(figsize=(10, 3))
    if bins:
        mid = [(b["start_s"] + b["end_s"]) / 2 for b in bins]
        shares = [[100 * b["split"].get(v, 0) for b in bins] for v in versions]
        ax.stackplot(mid, shares, labels=[_short(v, report) for v in versions])
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _marks(ax, report["marks"])
    ax.set(xlabel="seconds since traffic began", ylabel="% of answered rankings", title="Traffic split by version")
    _save(fig, path)


def plot_timeline(report: dict[str, Any], path: Path) -> None:
    alerts = report["alerts"]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.4 * max(1, len(alerts))))
    for row, alert in enumerate(alerts):
        ax.broken_barh([(a, max(b - a, 1.0)) for a, b in alert["spans"]], (row - 0.3, 0.6), color="tab:red")
    for action in report["actions"]:
        if action["at_s"] is not None:
            ax.plot(action["at_s"], -1, marker="v", color="tab:blue")
            ax.annotate(
                f"{action['kind']}: {action['outcome'] or action['phase']}",
                (action["at_s"], -1),
                fontsize=6,
                rotation=20,
            )
    _marks(ax, report["marks"])
    ax.set_yticks([-1, *range(len(alerts))], ["controller actions", *[a["name"] for a in alerts]], fontsize=7)
    ax.set(xlabel="seconds since traffic began", title="Alerts firing (red) and the controller's actions")
    _save(fig, path)


def plot_ope(report: dict[str, Any], path: Path) -> None:
    rows = [r for r in report["ope_vs_online"] if r["ope"] or r["online_slots"]]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for i, row in enumerate(rows):
        estimate = row["ope"].get("snips") or row["ope"].get("ips")
        if estimate:
            low, high = estimate["ci_low"], estimate["ci_high"]
            ax.errorbar(
                i - 0.1,
                100 * estimate["value"],
                yerr=[[100 * (estimate["value"] - low)], [100 * (high - estimate["value"])]],
                fmt="o",
                color="tab:blue",
                label="off-policy estimate (SNIPS, 95%)" if i == 0 else None,
            )
        if row["online_ctr"] is not None:
            ax.plot(
                i + 0.1,
                100 * row["online_ctr"],
                "s",
                color="tab:green",
                label="realized online CTR" if i == 0 else None,
            )
    ax.set_xticks(range(len(rows)), [_short(r["version"], report) for r in rows], fontsize=7)
    ax.set(ylabel="CTR per slot (%)", title="Each version: off-policy estimate vs realized online CTR")
    ax.legend(fontsize=7)
    _save(fig, path)


def _short(version: str, report: dict[str, Any]) -> str:
    roles = {v: k for k, v in report["versions"].items() if v}
    return f"{roles[version]}: {version[-8:]}" if version in roles else version[-8:]


def render(report: dict[str, Any], report_dir: Path) -> Path:
    """The four plots and index.html in `report_dir`; the path of index.html."""
    from kfloop.cli.demo.page import page

    for name, plot in zip(PLOTS, (plot_ctr, plot_split, plot_timeline, plot_ope), strict=True):
        plot(report, report_dir / name)
    index = report_dir / "index.html"
    index.write_text(page(report))
    return index
