"""Features on Feast, measured on SQLite and on a real Redis (started here, stopped after):

- event acknowledged (EventLog.append returned) -> its aggregate visible to the serving reader, with the
  feature updater running as its own process (`kfloop features follow`), as in production;
- one read of a user plus 80 candidate items through the serving reader (every candidate has user x item
  rows: the worst case), next to Feast's get_online_features for the same read;
- the updater's start-up rebuild from the log (its only "checkpoint").

Run: .venvs/serving/bin/python tests/bench/bench_features.py   (about a minute)
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml

from kfloop.config import load_config
from kfloop.eventlog import EventLog
from kfloop.features import names
from kfloop.features.config import FeaturesConfig
from kfloop.features.synthetic import feedback_record
from tests.integration.servers import start_redis

REPO = Path(__file__).resolve().parents[2]
ITEMS = [str(n) for n in range(80)]
FRESHNESS_EVENTS = 300
READS = 2000
FEAST_READS = 200
REBUILD_EVENTS = 50_000
RUN_FOLLOW = (
    "import argparse, sys\n"
    "from kfloop.cli.commands.features import follow\n"
    "sys.exit(follow(argparse.Namespace(config=sys.argv[1], metrics_port=None)))\n"
)


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):6.2f} ms   p99 {np.percentile(ms, 99):6.2f} ms   (n={len(ms)})"


def write_config(tmp: Path, backend: str, redis_address: str | None) -> Path:
    store = {"repo_dir": str(tmp / "features"), "obd_data_dir": str(REPO / "data")}
    if backend == "redis":
        store.update(online_store="redis", redis=redis_address)
    path = tmp / "features.yaml"
    path.write_text(
        yaml.safe_dump({"event_log": {"wal_dir": str(tmp / "wal"), "log_uri": str(tmp / "log")}, "store": store})
    )
    return path


def populate(log: EventLog, user: str) -> None:
    """Impressions and clicks of `user` on every candidate: every user x item row exists."""
    now = datetime.now(UTC)
    records = []
    for n, item in enumerate(ITEMS):
        ts = now - timedelta(minutes=n)
        records.append(feedback_record(f"p-{item}", "impression", user, item, ts, position=1))
        records.append(feedback_record(f"c-{item}", "click", user, item, ts))
    log.append(records)


def wait_until_following(reader, log: EventLog, process: subprocess.Popen) -> None:
    log.append([feedback_record("ready", "click", "probe", "0", datetime.now(UTC))])
    deadline = time.monotonic() + 120
    while reader.read("probe", []).user["u_clicks_1h"] != 1:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the feature updater did not start")
        time.sleep(0.05)


def measure_freshness(reader, log: EventLog) -> list[float]:
    """Append one click, then read until the user's click count shows it."""
    rng = random.Random(5)
    latencies = []
    for n in range(FRESHNESS_EVENTS):
        time.sleep(rng.uniform(0.0, 0.02))  # spread arrivals over the updater's poll cycle
        log.append([feedback_record(f"fresh-{n}", "click", "fresh", "1", datetime.now(UTC))])
        acknowledged = time.perf_counter()
        while reader.read("fresh", []).user["u_clicks_1h"] != n + 1:
            time.sleep(0.0002)
        latencies.append(time.perf_counter() - acknowledged)
    return latencies


def measure_reads(reader, feature_store, user: str) -> tuple[list[float], list[float]]:
    fast = []
    for _ in range(READS):
        began = time.perf_counter()
        read = reader.read(user, ITEMS)
        fast.append(time.perf_counter() - began)
    assert read.items["ui_clicks_1h"].sum() > 0 and read.items_known.all()
    service = feature_store.get_feature_service(names.SERVING_SERVICE)
    rows = [{names.USER_ID: user, names.ITEM_ID: i} for i in ITEMS]
    feast = []
    for _ in range(FEAST_READS):
        began = time.perf_counter()
        feature_store.get_online_features(features=service, entity_rows=rows).to_dict()
        feast.append(time.perf_counter() - began)
    return fast, feast


def bench_backend(backend: str, redis_address: str | None) -> None:
    from kfloop.features.reader import FeatureReader
    from kfloop.features.store import apply, materialize

    with tempfile.TemporaryDirectory(prefix=f"bench-features-{backend}-") as name:
        tmp = Path(name)
        config_path = write_config(tmp, backend, redis_address)
        config = load_config(FeaturesConfig, config_path)
        feature_store = apply(config)
        materialize(feature_store, views=[names.USER_CONTEXT, names.ITEM_CONTEXT])
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_FOLLOW, str(config_path)], cwd=tmp, stderr=subprocess.DEVNULL
        )
        try:
            with EventLog(config.event_log, writer_id="collector-0") as log:
                reader = FeatureReader(feature_store, config)
                wait_until_following(reader, log, process)
                populate(log, "bench-user")
                freshness = measure_freshness(reader, log)
                fast, feast = measure_reads(reader, feature_store, "bench-user")
                reader.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        print(f"[{backend}] event acknowledged -> visible online   {percentiles(freshness)}   target p99 <= 100 ms")
        print(f"[{backend}] serving reader, 1 user + 80 items    {percentiles(fast)}   target p99 <= 5 ms")
        print(f"[{backend}] Feast get_online_features, same read {percentiles(feast)}")


def bench_rebuild() -> None:
    """Start-up of the updater from a sealed log: read, count, write every live key (SQLite)."""
    from kfloop.features.store import apply
    from serving.follower.follower import FeatureFollower

    with tempfile.TemporaryDirectory(prefix="bench-features-rebuild-") as name:
        tmp = Path(name)
        config = load_config(FeaturesConfig, write_config(tmp, "sqlite", None))
        feature_store = apply(config)
        rng = random.Random(1)
        now = datetime.now(UTC)
        with EventLog(config.event_log, writer_id="import") as log:
            batch = []
            for n in range(REBUILD_EVENTS):
                ts = now - timedelta(seconds=rng.randrange(7 * 86_400))
                kind = "click" if n % 20 == 0 else "impression"
                batch.append(feedback_record(f"r{n}", kind, f"user-{rng.randrange(1000)}", rng.choice(ITEMS), ts))
                if len(batch) == 5000:
                    log.append(batch)
                    batch = []
        follower = FeatureFollower(config, feature_store)
        began = time.perf_counter()
        follower.start(write_all=False)  # as `follow` does
        rebuilt = time.perf_counter() - began
        keys = follower.backlog
        began = time.perf_counter()
        written = follower._write_backlog(None)
        writing = time.perf_counter() - began
        follower.close()
        print(
            f"[sqlite] updater start-up: state rebuilt from {REBUILD_EVENTS:,} sealed events in {rebuilt:.1f} s; "
            f"then {keys:,} keys ({written:,} rows) written in {writing:.1f} s, between polls for new events"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-rebuild", action="store_true")
    args = parser.parse_args()
    bench_backend("sqlite", None)
    if importlib.util.find_spec("redis") is None:
        print("[redis] skipped: the `redis` Python package is missing (the lock needs feast[redis])")
    else:
        with tempfile.TemporaryDirectory(prefix="bench-redis-") as name, start_redis(Path(name)) as server:
            bench_backend("redis", server.address)
    if not args.skip_rebuild:
        bench_rebuild()
    return 0


if __name__ == "__main__":
    sys.exit(main())
