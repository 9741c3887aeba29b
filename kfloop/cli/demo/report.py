"""The report's numbers, from a recorded run (`run/`) alone: report.json, then the plots and index.html beside it.

Times are seconds since the simulator's first scheduled ranking (t = 0); CTRs are clicks per shown slot. The
closed loop's CTR is given twice: realized (the simulator's drawn clicks) and expected (the click model's ground
truth for the slates served, less noisy); v1's is expected only (see counterfactual.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfloop.cli.demo.counterfactual import TableOf, v1_expected, world_tables
from kfloop.cli.demo.timeline import alert_spans, timeline
from kfloop.simulate.truth import read_rankings

REPORT_FILE = "report.json"
RECOVERED = 0.8
"""Recovered: the closed loop's expected CTR over a bin is back to this share of its pre-shift CTR."""
DETECT_WITHIN_S = 120.0
RECOVER_WITHIN_S = 600.0
"""Issue 20's targets: the shift detected within 2 minutes of demo time, recovered within 10."""


def load_json(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def load_run(run_dir: Path) -> dict[str, Any]:
    """Every file a run records, by name (missing ones empty)."""
    samples_file = run_dir / "samples.jsonl"
    samples = (
        [json.loads(x) for x in samples_file.read_text().splitlines() if x.strip()] if samples_file.exists() else []
    )
    simulate = run_dir / "simulate"
    return {
        "config": load_json(run_dir / "config.json", {}),
        "events": load_json(run_dir / "events.json", {}),
        "phases": load_json(run_dir / "phases.json", []),
        "actions": load_json(run_dir / "actions.json", []),
        "serving_state": load_json(run_dir / "serving_state.json", {}),
        "versions": load_json(run_dir / "versions.json", {}),
        "audit": load_json(run_dir / "audit.json", {}),
        "simulate": load_json(simulate / "run.json", {}),
        "rankings": read_rankings(simulate) if (simulate / "rankings.jsonl").exists() else [],
        "samples": samples,
    }


def seconds_since(start: str) -> Callable[[str | None], float | None]:
    zero = _utc(start)
    return lambda when: None if not when else round((_utc(when) - zero).total_seconds(), 1)


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def ctr_bins(rankings: list[dict[str, Any]], v1_values: list[float], bin_s: float) -> list[dict[str, Any]]:
    """Per time bin: slots, the loop's realized and expected CTR, v1's expected CTR, the share of each version."""
    bins: dict[int, dict[str, Any]] = {}
    for r, v1 in zip(rankings, v1_values, strict=True):
        b = bins.setdefault(
            int(r["elapsed_s"] // bin_s), {"slots": 0, "clicks": 0, "expected": 0.0, "v1": 0.0, "by": {}}
        )
        slots = len(r["items"])
        b["slots"] += slots
        b["clicks"] += sum(r["clicks"])
        b["expected"] += sum(r["expected_clicks"])
        b["v1"] += v1 * slots
        b["by"][r["model_version"] or "-"] = b["by"].get(r["model_version"] or "-", 0) + 1
    return [
        {
            "start_s": k * bin_s,
            "end_s": (k + 1) * bin_s,
            "slots": b["slots"],
            "loop_ctr": _ratio(b["clicks"], b["slots"]),
            "loop_expected_ctr": _ratio(b["expected"], b["slots"]),
            "v1_expected_ctr": _ratio(b["v1"], b["slots"]),
            "split": {v: round(n / sum(b["by"].values()), 4) for v, n in sorted(b["by"].items())},
        }
        for k, b in sorted(bins.items())
        if b["slots"]
    ]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def window_ctr(bins: list[dict[str, Any]], start: float, end: float) -> dict[str, float | None]:
    """Slot-weighted CTRs over the bins lying inside [start, end)."""
    inside = [b for b in bins if b["start_s"] >= start and b["end_s"] <= end]
    slots = sum(b["slots"] for b in inside)
    out: dict[str, float | None] = {"slots": slots}
    for key in ("loop_ctr", "loop_expected_ctr", "v1_expected_ctr"):
        out[key] = _ratio(sum(b[key] * b["slots"] for b in inside), slots)
    return out


def efficacy(bins: list[dict[str, Any]], marks: dict[str, float | None], window_s: float) -> dict[str, Any]:
    """Pre-shift and end-of-loop CTRs, the ratios, the times to detect and to recover."""
    shift = marks.get("shift")
    end = marks.get("bad_deployed") or (bins[-1]["end_s"] if bins else 0.0)
    if shift is None:
        return {"pre_shift": None, "after": None}
    pre = window_ctr(bins, max(0.0, shift - window_s), shift)
    after = window_ctr(bins, max(shift, end - window_s), end)
    baseline = pre["loop_expected_ctr"]
    recovered_at = next(
        (
            b["end_s"]
            for b in bins
            if b["start_s"] >= (marks.get("promoted") or float("inf"))
            and baseline
            and (b["loop_expected_ctr"] or 0) >= RECOVERED * baseline
        ),
        None,
    )
    return {
        "window_s": window_s,
        "pre_shift": pre,
        "after": after,
        "loop_ratio": _ratio(after["loop_expected_ctr"] or 0, baseline or 0),
        "v1_ratio": _ratio(after["v1_expected_ctr"] or 0, pre["v1_expected_ctr"] or 0),
        "time_to_detect_s": None if marks.get("detected") is None else round(marks["detected"] - shift, 1),
        "time_to_recover_s": None if recovered_at is None else round(recovered_at - shift, 1),
        "recovered_share": RECOVERED,
    }


def acceptance(e: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 20's efficacy checks on the report's own numbers, each with its target, value and verdict (None: the
    run did not get far enough to measure it)."""

    def check(name: str, target: str, value: float | None, ok: Callable[[float], bool]) -> dict[str, Any]:
        return {"check": name, "target": target, "value": value, "passed": None if value is None else ok(value)}

    return [
        check(
            "the closed loop regains its pre-shift CTR",
            f">= {RECOVERED:g}",
            e.get("loop_ratio"),
            lambda v: v >= RECOVERED,
        ),
        check("the never-retrained v1 does not", f"< {RECOVERED:g}", e.get("v1_ratio"), lambda v: v < RECOVERED),
        check(
            "shift detected (s)", f"<= {DETECT_WITHIN_S:g}", e.get("time_to_detect_s"), lambda v: v <= DETECT_WITHIN_S
        ),
        check("recovered (s)", f"<= {RECOVER_WITHIN_S:g}", e.get("time_to_recover_s"), lambda v: v <= RECOVER_WITHIN_S),
    ]


def scored(e: dict[str, Any], events: dict[str, Any]) -> dict[str, Any]:
    """The efficacy numbers with what the detection was (the alerts the controller retrained on) and the checks."""
    detected = events.get("detected") or {}
    alerts = sorted({a.get("alertname", "?") for a in detected.get("alerts", [])})
    return e | {"detected_on": alerts, "checks": acceptance(e)}


def ope_vs_online(versions: dict[str, Any], rankings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each version's off-policy estimate (its card, IPS/SNIPS/DR) next to its realized online CTR."""
    out = []
    for version, card in sorted(versions.items()):
        served = [r for r in rankings if r["model_version"] == version]
        slots = sum(len(r["items"]) for r in served)
        estimates = {
            name: card["ope"][name]["candidate"]
            for name in ("ips", "snips", "dr")
            if isinstance(card.get("ope", {}).get(name), dict) and "candidate" in card["ope"][name]
        }
        out.append(
            {
                "version": version,
                "blessed": card.get("blessing", {}).get("blessed"),
                "low_evidence": card.get("blessing", {}).get("low_evidence"),
                "ope": estimates,
                "online_slots": slots,
                "online_ctr": _ratio(sum(sum(r["clicks"]) for r in served), slots),
                "online_expected_ctr": _ratio(sum(sum(r["expected_clicks"]) for r in served), slots),
            }
        )
    return out


def bad_canary(run: dict[str, Any], at: Callable[[str | None], float | None]) -> dict[str, Any] | None:
    bad = run["events"].get("bad")
    if not bad:
        return None
    forced = [h for h in run["serving_state"].get("history", []) if h.get("version") == bad["version"]]
    router = bad.get("router") or {}
    deployed, first, rolled = at(bad.get("deployed_at")), at(bad.get("first_answer_at")), at(bad.get("rolled_back_at"))
    return {
        "version": bad["version"],
        "deployed_s": deployed,
        "first_answer_s": first,
        "rolled_back_s": rolled,
        "seconds_to_rollback": None if rolled is None or first is None else round(rolled - first, 1),
        "requests_by_code": router,
        "requests": sum(router.values()),
        "history": forced,
    }


def build_report(run: dict[str, Any], table_of: TableOf | None) -> dict[str, Any]:
    """The report's numbers. `table_of` gives the click tables (None: rebuilt from the simulator's config)."""
    events, config = run["events"], run["config"]
    at = seconds_since(events.get("traffic_started_at") or events.get("started_at"))
    rankings = sorted(run["rankings"], key=lambda r: r["elapsed_s"])
    v1 = events.get("v1")
    if table_of is None and rankings:
        table_of = world_tables(run["simulate"]["config"], run["simulate"].get("scenario_outcome") or {})
    v1_values = v1_expected(rankings, v1, table_of) if rankings else []
    bins = ctr_bins(rankings, v1_values, config.get("bin_s", 15.0))
    marks = timeline(run, at)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config,
        "phases": run["phases"],
        "versions": {"v1": v1, "candidate": events.get("candidate"), "bad": (events.get("bad") or {}).get("version")},
        "marks": marks,
        "ctr_bins": bins,
        "efficacy": scored(
            efficacy(bins, marks, window_s=max(config.get("recover_s", 30.0), 2 * config.get("bin_s", 15.0))), events
        ),
        "alerts": alert_spans(run["samples"], at),
        "actions": [_action(a, at) for a in sorted(run["actions"], key=lambda a: a["created_at"])],
        "serving_history": [h | {"at_s": at(h["at"])} for h in run["serving_state"].get("history", [])],
        "ope_vs_online": ope_vs_online(run["versions"], rankings),
        "bad_canary": bad_canary(run, at),
        "experiments": next((s["experiments"] for s in reversed(run["samples"]) if s.get("experiments")), []),
        "audit": run["audit"],
        "simulator": run["simulate"].get("summary"),
    }


def _action(action: dict[str, Any], at: Callable[[str | None], float | None]) -> dict[str, Any]:
    alerts = sorted({a.get("alertname", "?") for a in action.get("alerts", [])})
    keep = ("id", "kind", "phase", "outcome", "model_version", "variant", "reason", "created_at")
    return {k: action.get(k) for k in keep} | {"at_s": at(action["created_at"]), "alerts": alerts}


def write_report(run_dir: Path, report_dir: Path, table_of: TableOf | None = None) -> Path:
    """report.json, the PNG plots and index.html in `report_dir`; the path of index.html."""
    from kfloop.cli.demo.render import render

    report = build_report(load_run(run_dir), table_of)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str))
    return render(report, report_dir)
