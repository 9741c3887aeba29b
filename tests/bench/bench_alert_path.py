"""The alert path, end to end: from a metric crossing its threshold to the controller's action.

    .venvs/serving/bin/python tests/bench/bench_alert_path.py [--crossings 20]

`kfloop up` runs the real Prometheus, Alertmanager and controller (the system file's entries, ports moved to free
ones) and a small exporter process (tests/support/metric_exporter.py) whose gauge the benchmark flips. A rule
without `for` (the real rules add their `for` on top of this path) fires on the crossing; Alertmanager notifies
the controller, which rolls the canary back in the serving state. Each crossing starts at a random moment of the
scrape cycle, with a canary deployed, and ends when the controller has finished the rollback (its action's
`finished_at`); the gauge then goes back and the alert resolves before the next one.

Printed: each crossing's time to the webhook and to the finished rollback, their p50 and p99, and the ratio to
the scrape plus the evaluation interval (1 s + 1 s locally). Expected, from the intervals alone: up to one scrape
interval before the crossing is seen, up to one evaluation interval before the rule sees it, and, as an incident
recurs in a group Alertmanager still holds, up to one group_interval (1 s) before it is sent on.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from kfloop.deploy import ServingTarget, change_serving, deploy
from kfloop.processes import free_port
from kfloop.registry import ModelRegistry
from tests.support.controller import MANIFEST, register
from tests.support.metric_exporter import system_part, write_spec
from tests.support.system import (
    Controller,
    Prometheus,
    kfloop,
    live_status,
    part_of,
    system_data,
    wait_for,
    write_system,
)

SCRAPE_PLUS_EVALUATION_S = 2.0
RULES = {
    "groups": [
        {
            "name": "kfloop-bench",
            "rules": [
                {
                    "alert": "BenchCanaryBroken",
                    "expr": 'max by (variant, model_version) (kfloop_bench_signal{variant="canary"}) > 0.5',
                    "labels": {"severity": "critical", "action": "rollback"},
                    "annotations": {"summary": "the benchmark's gauge crossed its threshold"},
                }
            ],
        }
    ]
}


def bench_system(root: Path, spec: Path) -> dict[str, Any]:
    """Controller, Alertmanager and Prometheus as `kfloop up` runs them, the exporter, and the bench's rule."""
    config = system_data(keep=["controller", "alertmanager", "prometheus"], start_timeout_s=120)
    config["parts"].insert(0, system_part(spec, free_port()))
    rules = root / "bench-rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    part_of(config, "prometheus")["config_overrides"] = {"rule_files": [str(rules)]}
    return config


def signal(version: str, value: float) -> list[dict[str, Any]]:
    labels = {"variant": "canary", "model_version": version}
    return [{"name": "kfloop_bench_signal", "labels": labels, "value": value}]


def seconds_since(epoch: float, stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp() - epoch


def crossing(spec: Path, target: ServingTarget, version: str, controller: Controller, prometheus: Prometheus) -> tuple:
    """One crossing: a canary deployed, the gauge up at a random point of the scrape cycle, the rollback waited
    for; then the gauge down and the alert resolved. (seconds to the webhook, seconds to the finished action)."""
    change_serving(
        target,
        "deploy",
        lambda state: deploy(state, target.registry, version, 10, operator="bench", reason="alert path bench"),
    )
    done_before = len(controller.actions("rollback"))
    time.sleep(random.uniform(0, 1))
    crossed = time.time()
    write_spec(spec, signal(version, 1.0))
    rolled = wait_for(lambda: _finished(controller, done_before), "the controller's rollback", 60, 0.02)
    write_spec(spec, signal(version, 0.0))
    wait_for(lambda: not prometheus.alerts("BenchCanaryBroken"), "the alert to resolve", 30, 0.1)
    assert rolled["outcome"] == "rolled_back", rolled
    return seconds_since(crossed, rolled["created_at"]), seconds_since(crossed, rolled["finished_at"])


def _finished(controller: Controller, done_before: int) -> dict[str, Any] | None:
    actions = controller.actions("rollback")
    return actions[0] if len(actions) > done_before and actions[0]["phase"] == "done" else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crossings", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-alert-path-") as tmp:
        root = Path(tmp)
        state = root / "state"
        registry = ModelRegistry(state / "registry")
        # the newer version is seeded as stable; the older one is deployed as the canary before each crossing
        canary, _stable = (register(registry, root / "models", n) for n in range(2))
        target = ServingTarget(state / "serving", MANIFEST, registry)
        spec = root / "series.json"
        write_spec(spec, [])
        system = write_system(root / "system.yaml", bench_system(root, spec))
        where = ["--config", str(system), "--state-dir", str(state)]
        started = kfloop("up", *where, timeout=300)
        if started.returncode != 0:
            print(started.stdout + started.stderr)
            return 1
        try:
            return run(args.crossings, where, state, target, spec, canary)
        finally:
            kfloop("down", *where, timeout=120)


def run(crossings: int, where: list[str], state: Path, target: ServingTarget, spec: Path, canary: str) -> int:
    live = live_status(where)
    url = {p["name"]: f"http://127.0.0.1:{p['port']}" for p in live["parts"]}
    prometheus = Prometheus(url["prometheus"])
    controller = Controller(url["controller"], state / "controller" / "token")
    wait_for(lambda: prometheus.targets("kfloop-exporter"), "Prometheus to find the exporter", 30)
    to_webhook, to_action = [], []
    for n in range(crossings):
        webhook, action = crossing(spec, target, canary, controller, prometheus)
        to_webhook.append(webhook)
        to_action.append(action)
        print(f"  crossing {n + 1:>2}: webhook {webhook:5.2f} s, rollback done {action:5.2f} s")
    print(f"alert path over {crossings} crossings (scrape + evaluation interval {SCRAPE_PLUS_EVALUATION_S:g} s):")
    for name, values in (("to the webhook", to_webhook), ("to the finished rollback", to_action)):
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(
            f"  {name:<25} p50 {p50:.2f} s ({p50 / SCRAPE_PLUS_EVALUATION_S:.2f} x)   "
            f"p99 {p99:.2f} s ({p99 / SCRAPE_PLUS_EVALUATION_S:.2f} x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
