"""The run's moments (shift, detection, candidate, promotion, bad version, rollback) and the alerts' firing spans,
in seconds since the traffic began."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SPAN_LABELS = ("model_version", "variant")
At = Callable[[str | None], float | None]


def timeline(run: dict[str, Any], at: At) -> dict[str, float | None]:
    events = run["events"]
    detected = events.get("detected") or {}
    promoted = events.get("promoted") or {}
    bad = events.get("bad") or {}
    return {
        "shift": at(events.get("shift_at")),
        "detected": at(detected.get("created_at")),
        "candidate_deployed": at(events.get("candidate_deployed_at")),
        "promoted": at(promoted.get("at")),
        "bad_deployed": at(bad.get("deployed_at")),
        "rolled_back": at(bad.get("rolled_back_at")),
    }


def alert_spans(samples: list[dict[str, Any]], at: At) -> list[dict[str, Any]]:
    """Each alert (by name, model version and variant: one per feature would crowd the page) with the sampled spans
    during which it was firing."""
    spans: dict[tuple[str, str], list[list[float]]] = {}
    open_now: set[tuple[str, str]] = set()
    for sample in samples:
        t = at(sample["at"])
        firing = {
            (a["name"], ",".join(f"{k}={a['labels'][k]}" for k in SPAN_LABELS if k in a["labels"]))
            for a in sample.get("alerts", [])
            if a["state"] == "firing"
        }
        for key in firing:
            if key in open_now:
                spans[key][-1][1] = t
            else:
                spans.setdefault(key, []).append([t, t])
        open_now = firing
    return [
        {"name": name, "labels": labels, "spans": [[a, b] for a, b in found], "first_firing_s": found[0][0]}
        for (name, labels), found in sorted(spans.items(), key=lambda item: item[1][0][0])
    ]
