"""A small but real serving testbed: a Feast store with item context and a few users' feedback, and
contract-model versions in a model registry. For tests, benchmarks and trying the stack without a trained
model (`python -m tests.support.testbed DIR` prints a config that serves it).

Item context is the Open Bandit Dataset sample's when `kfloop data fetch` has put it in `data/` (80 items),
else a generated one in the same layout. User `u-clicker` clicked item 3 four times in the last day;
`u-browser` only saw items; anyone else is a cold start.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from kfloop.eventlog import EventLog, EventLogConfig
from kfloop.features.config import FeaturesConfig, StoreConfig
from kfloop.features.synthetic import feedback_record
from kfloop.registry import ModelRegistry

CLICKER, BROWSER = "u-clicker", "u-browser"
CLICKED_ITEM = "3"
OBD_SAMPLE = Path("data")


@dataclass(frozen=True)
class Testbed:
    root: Path
    features: FeaturesConfig
    registry_uri: str
    versions: list[str]
    items: list[str]


def write_item_context(data_dir: Path, n_items: int) -> None:
    """An OBD-layout sample: one user row and `n_items` items with hashed-looking categories."""
    random_dir = data_dir / "obd" / "random"
    random_dir.mkdir(parents=True, exist_ok=True)
    header = ",timestamp,item_id,position,click,propensity_score," + ",".join(f"user_feature_{i}" for i in range(4))
    (random_dir / "all.csv").write_text(f"{header}\n0,2019-11-24 00:00:00+00:00,0,1,0,0.0125,a0,b0,c0,d0\n")
    rows = [f"{n},{n},{(n % 7 - 3) / 3:.4f},h{n % 3},g{n % 2},k{n % 5}" for n in range(n_items)]
    header = ",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3"
    (random_dir / "item_context.csv").write_text("\n".join([header, *rows]) + "\n")


def _feedback(now: datetime) -> list[dict]:
    records = []
    for n in range(4):
        at = now - timedelta(hours=2, minutes=n)
        records.append(feedback_record(f"tb-i{n}", "impression", CLICKER, CLICKED_ITEM, at))
        records.append(feedback_record(f"tb-c{n}", "click", CLICKER, CLICKED_ITEM, at + timedelta(seconds=5)))
    for n, item in enumerate(("1", "2", "4", "5")):
        records.append(feedback_record(f"tb-b{n}", "impression", BROWSER, item, now - timedelta(hours=3, minutes=n)))
    return records


def build_features(root: Path, *, n_items: int = 12, use_obd_sample: bool = False) -> tuple[FeaturesConfig, list[str]]:
    """Apply the Feast repo, log the users' feedback, materialize; returns the config and the catalog."""
    from kfloop.features.offline import compute_aggregate_tables
    from kfloop.features.store import apply, materialize
    from serving.transformer.features import catalog_item_ids

    data_dir = root / "data"
    if use_obd_sample and (OBD_SAMPLE / "obd" / "random" / "item_context.csv").is_file():
        shutil.copytree(OBD_SAMPLE / "obd" / "random", data_dir / "obd" / "random", dirs_exist_ok=True)
    else:
        write_item_context(data_dir, n_items)
    config = FeaturesConfig(
        event_log=EventLogConfig(wal_dir=root / "wal", log_uri=str(root / "log")),
        store=StoreConfig(repo_dir=root / "features", obd_data_dir=data_dir),
    )
    now = datetime.now(UTC)
    with EventLog(config.event_log, writer_id="testbed") as log:
        log.append(_feedback(now))
    store = apply(config)
    compute_aggregate_tables(config, until=now)
    materialize(store, end=now + timedelta(seconds=1))
    return config, catalog_item_ids(store)


def build_registry(root: Path, versions: int = 2) -> tuple[str, list[str]]:
    """`versions` contract-model versions (seeds 0, 1, ...), registered a minute apart, oldest first."""
    from tests.support.contract_model import ContractSpec, register

    uri = str(root / "registry")
    registry = ModelRegistry(uri)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=versions)
    ids = [
        register(registry, root / "work", ContractSpec(seed=seed), created_at=start + timedelta(minutes=seed))
        for seed in range(versions)
    ]
    return uri, ids


def build(root: Path, *, versions: int = 2, n_items: int = 12, use_obd_sample: bool = False) -> Testbed:
    features, items = build_features(root, n_items=n_items, use_obd_sample=use_obd_sample)
    registry_uri, ids = build_registry(root, versions)
    return Testbed(root, features, registry_uri, ids, items)


def stack_config(testbed: Testbed, *, manifest: Path, ports_free: bool = True, explanation_rate: float = 0.001) -> dict:
    """A serving config (as a YAML-able dict) that serves the testbed, state under its root."""
    root = testbed.root
    ports = {"transformer_port": 0, "router_port": 0, "explainer_port": 0, "audit_sink_port": 0}
    return {
        "predictor": {
            "registry_uri": testbed.registry_uri,
            "cache_dir": str(root / "cache"),
            "audit": {
                "spool": {"dir": str(root / "spool"), "retry_max_s": 1.0, "idle_wait_s": 0.05},
                "explanations": {"rate": explanation_rate},
            },
        },
        "transformer": {"features": testbed.features.model_dump(mode="json")},
        "explainer": {"registry_uri": testbed.registry_uri, "cache_dir": str(root / "cache")},
        "stack": {
            "state_dir": str(root / "state"),
            "manifest": str(manifest),
            "audit_store_url": f"sqlite:///{root / 'audit.db'}",
            **(ports if ports_free else {}),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.testbed", description=__doc__)
    parser.add_argument("root", help="directory to build the testbed in")
    parser.add_argument("--obd", action="store_true", help="use the OBD sample's 80 items from ./data")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    testbed = build(root, use_obd_sample=args.obd)
    config = stack_config(testbed, manifest=Path("manifests/serving/inferenceservice.yaml").resolve(), ports_free=False)
    path = root / "serving.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"testbed in {root}: versions {', '.join(testbed.versions)}; {len(testbed.items)} items")
    print(f"serve it: kfloop serve --config {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
