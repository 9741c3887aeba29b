"""index.html of the demo report: the plots and tables of report.json's numbers (nothing computed here)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 6px}"
    "img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:.5em;font-size:.75em;overflow:auto}"
)

LOADED = (
    "<script>window.addEventListener('load', () => { document.body.dataset.plotsLoaded = "
    "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length; });</script>"
)
"""Marks the body with how many plots the browser loaded (what the page test reads from the DOM)."""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return escape(json.dumps(value, default=str))
    return escape("-" if value is None else str(value))


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def summary(report: dict[str, Any]) -> str:
    e, bad = report["efficacy"], report["bad_canary"] or {}
    pre, after = e.get("pre_shift") or {}, e.get("after") or {}
    rows = [
        ("closed loop, expected CTR before the shift", _pct(pre.get("loop_expected_ctr"))),
        ("closed loop, expected CTR at the end of the loop", _pct(after.get("loop_expected_ctr"))),
        ("closed loop: end / before", _cell(e.get("loop_ratio"))),
        (
            "never-retrained v1, expected CTR before / at the end",
            f"{_pct(pre.get('v1_expected_ctr'))} / {_pct(after.get('v1_expected_ctr'))}",
        ),
        ("never-retrained v1: end / before", _cell(e.get("v1_ratio"))),
        ("time to detect the shift (s)", _cell(e.get("time_to_detect_s"))),
        (
            f"time to recover {int(100 * e.get('recovered_share', 0.8))}% of the pre-shift CTR (s)",
            _cell(e.get("time_to_recover_s")),
        ),
        (
            "requests the bad canary was sent (router, by code)",
            f"{_cell(bad.get('requests'))} {_cell(bad.get('requests_by_code'))}",
        ),
        ("bad version: its first answer to its rollback (s)", _cell(bad.get("seconds_to_rollback"))),
    ]
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def checks(report: dict[str, Any]) -> str:
    """Issue 20's efficacy checks: target, this run's value, verdict."""
    e = report["efficacy"]
    verdict = {True: "pass", False: "FAIL", None: "not measured"}
    rows = [c | {"verdict": verdict[c["passed"]]} for c in e.get("checks", [])]
    detected_on = ", ".join(e.get("detected_on") or []) or "-"
    note = f"<p>The retraining after the shift was started on: {escape(detected_on)}.</p>"
    return table(rows, ["check", "target", "value", "verdict"]) + note


def audit_section(audit: dict[str, Any]) -> str:
    sample = [
        {
            "ts": r.get("ts"),
            "request_id": r.get("request_id"),
            "model_version": r.get("model_version"),
            "kind": r.get("kind"),
        }
        for r in audit.get("sample", [])
    ]
    explained = "".join(
        f"<h4>{escape(rid)}</h4><pre>{escape(text[:3000])}</pre>" for rid, text in audit.get("explanations", {}).items()
    )
    counts = escape(json.dumps(audit.get("kinds", {})))
    return (
        f"<p>{audit.get('records', 0)} audit records in the run ({counts}).</p>"
        + table(sample, list(sample[0]) if sample else [])
        + explained
    )


def page(report: dict[str, Any]) -> str:
    versions = report["versions"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kfloop demo report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>kfloop demo: the closed loop on one machine</h1>",
        f"<p>v1 {escape(str(versions['v1']))}; candidate {escape(str(versions['candidate']))}; "
        f"bad version {escape(str(versions['bad']))}. Generated {escape(report['generated_at'])}.</p>",
        "<h2>Summary</h2>",
        summary(report),
        "<h3>Issue 20's efficacy checks</h3>",
        checks(report),
        "<h2>Phases</h2>",
        table(report["phases"], ["name", "start_s", "seconds", "notes"]),
        "<h2>Online CTR</h2><img id='plot-ctr' src='ctr.png' alt='online CTR over time'>",
        "<h2>Traffic split</h2><img id='plot-split' src='split.png' alt='traffic split over time'>",
        "<h2>Alerts and actions</h2><img id='plot-timeline' src='timeline.png' alt='alerts and actions'>",
        table(report["actions"], ["at_s", "kind", "alerts", "outcome", "model_version", "reason"]),
        "<h3>Serving changes</h3>",
        table(report["serving_history"], ["at_s", "action", "version", "percent", "by", "note"]),
        "<h2>Off-policy estimates vs online</h2><img id='plot-ope' src='ope.png' alt='OPE vs online CTR'>",
        table(
            report["ope_vs_online"],
            ["version", "blessed", "low_evidence", "online_slots", "online_ctr", "online_expected_ctr"],
        ),
        "<h2>Experiments' decisions</h2>",
        table(report["experiments"], sorted({k for e in report["experiments"] for k in e})),
        "<h2>Audit sample</h2>",
        audit_section(report["audit"] or {}),
        "<p>All numbers are in <a href='report.json'>report.json</a>.</p>",
        LOADED,
        "</body></html>",
    ]
    return "\n".join(parts)
