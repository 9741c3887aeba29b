"""A recorded demo run, made up and small: the files `kfloop demo` writes under `run/`, for tests of the report
(tests/unit/test_demo_report.py) and of its page in a browser, without running the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

T0 = "2026-12-07T10:00:00.000Z"
V1, V2, BAD = "v1-aaaaaaaa", "v2-bbbbbbbb", "bad-cccccccc"
SHIFT_S = 40.0


def table_of(user_id: str, elapsed_s: float) -> np.ndarray:
    """Two items, one position: before the shift item 0 is liked (0.2 vs 0.02), after it item 1."""
    liked = np.array([[0.2], [0.02]])
    return liked[::-1] if elapsed_s >= SHIFT_S else liked


def ranking(index: int, elapsed_s: float, version: str, item: str) -> dict[str, Any]:
    expected = float(table_of("u1", elapsed_s)[int(item), 0])
    return {
        "index": index, "request_id": f"r{index}", "user_id": "u1", "cohort_id": "c1", "shifted": elapsed_s >= SHIFT_S,
        "ts": T0, "elapsed_s": elapsed_s, "latency_ms": 1.0, "model_version": version, "variant": "stable",
        "items": [item], "positions": [1], "propensities": [1.0], "expected_clicks": [expected],
        "clicks": [int(index % 5 == 0)], "unmodelled": 0,
    }  # fmt: skip


def rankings() -> list[dict[str, Any]]:
    """v1 shows item 0 for 60 s (liked until the shift at 40 s); v2 shows item 1 from 60 s to 100 s."""
    out = [ranking(i, float(i), V1, "0") for i in range(60)]
    return out + [ranking(i, float(i), V2, "1") for i in range(60, 100)]


def at(seconds: float) -> str:
    return f"2026-12-07T10:{int(seconds) // 60:02d}:{int(seconds) % 60:02d}.000Z"


def record(run: Path) -> Path:
    (run / "simulate").mkdir(parents=True)
    files = {
        "config.json": {"bin_s": 10.0, "recover_s": 20.0},
        "events.json": {
            "started_at": T0, "traffic_started_at": T0, "v1": V1, "shift_at": at(SHIFT_S), "candidate": V2,
            "detected": {"created_at": at(52), "alerts": [{"alertname": "OnlineRewardDecay"}]},
            "candidate_deployed_at": at(58), "promoted": {"at": at(60), "by": "kfloop-demo"},
            "bad": {"version": BAD, "deployed_at": at(100), "first_answer_at": at(100), "rolled_back_at": at(109),
                    "router": {"500": 7.0, "200": 1.0}},
        },
        "phases": [{"name": "train v1", "start_s": 0.0, "seconds": 10.0, "notes": []}],
        "actions": [{"id": "a1", "kind": "retrain", "phase": "done", "outcome": "deployed", "created_at": at(52),
                     "reason": "r", "alerts": [{"alertname": "OnlineRewardDecay"}]}],
        "serving_state": {"history": [{"at": at(100), "action": "deploy", "version": BAD, "percent": 50,
                                       "by": "kfloop-demo", "note": "forced: not blessed"}]},
        "versions.json": {V1: {"ope": {"snips": {"candidate": {"value": 0.1, "ci_low": 0.05, "ci_high": 0.2}}},
                               "blessing": {"blessed": True, "low_evidence": True}}},
        "audit.json": {"records": 1, "kinds": {"decision": 1}, "sample": [{"request_id": "r1", "kind": "decision"}],
                       "explanations": {"r1": "item 0: ui_clicks_7d +0.3"}},
    }  # fmt: skip
    for name, content in files.items():
        (run / (name if name.endswith(".json") else f"{name}.json")).write_text(json.dumps(content))
    (run / "simulate" / "run.json").write_text(json.dumps({"summary": {"answered": 100}}))
    (run / "simulate" / "rankings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rankings()))
    samples = [{"at": at(t), "phase": "p", "alerts": [], "ctr": {}} for t in range(0, 110, 5)]
    for sample in samples[10:13]:  # 50 s to 60 s
        sample["alerts"] = [{"name": "OnlineRewardDecay", "state": "firing", "labels": {"model_version": V1}}]
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return run
