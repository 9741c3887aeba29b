"""For the serving bench (bench_serving.py): a collector taking the predictors' impressions, and what they logged.

Impression logging costs the request path nothing by design (a slate's impressions are derived from the decision
already fsynced to the audit spool); what it adds is off the path but on the same cores: the predictors' impression
shipper threads (reading the spool back, one POST per batch) and the collector (validation, its own fsync, sealing).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from serving.common.process import ServiceProcess

TOKEN = "bench-serving-token-not-a-secret"


def start_collector(root: Path) -> tuple[ServiceProcess, dict]:
    """`kfloop collector` with a serving token, its log under root; and the predictor config section that ships
    impressions to it."""
    token_file = root / "serving-token"
    token_file.write_text(TOKEN)
    config = {
        "writer_id": "bench-collector",
        "event_log": {"wal_dir": str(root / "collector-wal"), "log_uri": str(root / "collector-events")},
        "serving_token_file": str(token_file),
    }
    path = root / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    collector = ServiceProcess("kfloop", ["collector", "--config", str(path)], log_path=root / "collector.log")
    collector.start(timeout_s=120)
    return collector, {"collector_url": collector.url, "token_file": str(token_file)}


def predictor_total(endpoints: dict, metric: str) -> float:
    """A counter summed over every label and every predictor replica of a stack."""
    total = 0.0
    for replicas in endpoints["predictors"].values():
        for replica in replicas:
            with urllib.request.urlopen(f"{replica['url']}/metrics", timeout=10) as response:
                text = response.read().decode()
            for family in text_string_to_metric_families(text):
                total += sum(s.value for s in family.samples if s.name == f"{metric}_total")
    return total


def report(rows: dict[str, list[tuple]], logged: float, slates: float) -> None:
    """Both variants' p99 and CPU per request, run by run; and whether the logging stack logged every slate."""
    print("  impression logging   p99 ms (each run)       CPU ms per request, all processes (each run)")
    for name, runs in rows.items():
        p99s = ", ".join(f"{r[2]:.1f}" for r in runs)
        cpus = ", ".join(f"{r[4]:.2f}" for r in runs)
        errors = sum(r[3] for r in runs)
        print(f"  {name:<20} {p99s:<23} {cpus}" + (f"   errors {errors}" if errors else ""))
    print(f"  impressions the collector took: {logged:.0f} ({logged / slates:.2f} per slate the logging stack served)")
