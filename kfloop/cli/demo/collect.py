"""At the end of a run, what the report needs that the live samples do not hold, copied into `run/`: the
controller's actions, the serving state's history, each version's card, the simulator's ground truth, an audit
sample with explanations."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

from kfloop.cli.demo import loop
from kfloop.registry import ModelRegistry
from kfloop.simulate.truth import RANKINGS_FILE, RUN_FILE

if TYPE_CHECKING:
    from kfloop.cli.demo.flow import Demo

AUDIT_SAMPLE = 6
EXPLAINED = 1
"""`kfloop audit explain` runs (each loads the explainer's model: ~25 s here)..."""
RECORDED_EXPLANATIONS = 2
"""...shown beside the serving explainer's own recorded explanations."""


def record(demo: Demo) -> None:
    run = demo.run_dir
    _write(run / "actions.json", loop.actions(demo))
    _write(run / "serving_state.json", loop.serving(demo).model_dump(mode="json"))
    registry = ModelRegistry(demo.files.registry)
    _write(run / "versions.json", {v: _card(registry, v) for v in registry.versions()})
    simulated = demo.files.simulate_out / "demo"
    (run / "simulate").mkdir(exist_ok=True)
    for name in (RANKINGS_FILE, RUN_FILE):
        if (simulated / name).exists():
            shutil.copy(simulated / name, run / "simulate" / name)
    audit_sample(demo)


def _card(registry: ModelRegistry, version: str) -> dict[str, Any]:
    card = registry.card(version)
    return {
        "created_at": card.created_at,
        "ope": card.ope,
        "blessing": card.blessing.model_dump(mode="json"),
        "data": card.data,
        "code_version": card.code_version,
    }


def audit_sample(demo: Demo) -> None:
    """A few decisions from the audit trail (`kfloop audit pull`), and `kfloop audit explain` for some of them."""
    store = ["--store-url", f"sqlite:///{demo.files.state / 'audit' / 'audit.db'}"]
    exported = demo.run_dir / "audit-export.jsonl"
    demo.kfloop(
        "audit", "pull", *store, "--since", demo.events["started_at"][:19] + "Z", "--until", "2100-01-01",
        "--output", str(exported), timeout=300, check=False,
    )  # fmt: skip
    records = []
    if exported.exists():
        records = [json.loads(line) for line in exported.read_text().splitlines() if line.strip()]
    decisions = [r for r in records if r.get("kind") == "decision"]
    step = max(1, len(decisions) // AUDIT_SAMPLE)
    sample = decisions[::step][:AUDIT_SAMPLE]
    explained = {}
    for row in [r for r in records if r.get("kind") == "explanation"][:RECORDED_EXPLANATIONS]:
        explained[str(row.get("request_id"))] = json.dumps(row, default=str)  # recorded by the serving explainer
    for row in sample[:EXPLAINED]:
        request_id = row.get("request_id")
        if request_id:
            explained[request_id] = demo.kfloop(
                "audit", "explain", request_id, *store, "--serving-config", loop.serving_config(demo),
                timeout=300, check=False,
            )  # fmt: skip
    _write(
        demo.run_dir / "audit.json",
        {"records": len(records), "kinds": _kinds(records), "sample": sample, "explanations": explained},
    )


def _kinds(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in records:
        counts[str(row.get("kind"))] = counts.get(str(row.get("kind")), 0) + 1
    return counts


def _write(path: Any, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
