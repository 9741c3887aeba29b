"""Ranking latency through the local serving stack, at fixed request rates; explainer latency separately.

Path of a ranking request: client -> transformer (features from the online store) -> router (the stable/
canary split) -> predictor (80 candidates scored through the SavedModel signature, epsilon-greedy slate,
decision fsynced to the audit spool before the answer) and back. The stack is the one `kfloop serve` runs,
on a testbed (the OBD sample's 80 items when `data/` has it, the contract model, a SQLite feature store).

Open loop: requests are sent on a fixed schedule whatever the answers do, and each latency is measured from
its scheduled time, so a slow stack is not hidden by the client waiting for it (coordinated omission). Each
rate runs a few seconds before it is measured. The rates run with the stack's background explanations off:
on a cluster the explainer is its own deployment on its own cores, and its latency is timed separately here.
Then the target rate with impression logging on (a second stack whose predictors ship every slate's impressions
to a collector) and off, alternated while both stacks are up; one more run at the target rate then shows what a
sample of background explanations on the same two cores costs the ranking path.

    .venvs/serving/bin/python tests/bench/bench_serving.py [--rates 100,200,300] [--seconds 10] [--warm-up 3]
        [--explanation-rate 0.001] [--impression-rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

from kfloop.processes import stop_process
from tests.bench import impression_runs
from tests.bench.load import Pool, bodies, fixed_rate
from tests.support import testbed

REPO = Path(__file__).resolve().parents[2]
MODEL = "kfloop-ranker"
TARGET_RATE, TARGET_P99_MS, CEILING_P99_MS = 200, 25.0, 50.0


def own_cpu_seconds() -> float:
    """CPU of this process (the load generator; its TensorFlow is idle during the runs)."""
    times = os.times()
    return times.user + times.system


def host_seconds() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat (None where there is none): what
    else ran on the cores, and what the hypervisor kept from them, tell a busy host from a slower stack."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def host_line(before: tuple[float, float] | None, ours_s: float, seconds: float, n: int) -> str | None:
    """Other processes' and the kernel's CPU per request (busy time beyond the stack's and the generator's: the
    interrupt time of the stack's own loopback traffic is in it, ~0.05 ms) and steal."""
    after = host_seconds()
    if before is None or after is None:
        return None
    others_ms = max(0.0, (after[0] - before[0]) - ours_s) / n * 1000
    steal = 100 * (after[1] - before[1]) / (seconds * (os.cpu_count() or 1))
    return (
        f"          host: other processes and the kernel {others_ms:.2f} ms per request; "
        f"steal {steal:.1f}% of the cores"
    )


def percentiles(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def in_process_p50(root: Path, version: str, registry_uri: str, items: list[str], features_config) -> float:
    """The model alone: features already read, 80 candidates through the SavedModel signature."""
    from kfloop.registry import ModelRegistry
    from serving.common.model_io import SavedRanker
    from serving.common.protocol import Ranking
    from serving.transformer.features import OnlineFeatures

    ranker = SavedRanker(ModelRegistry(registry_uri).local_copy(version, "model", root / "cache"))
    ranking = OnlineFeatures(features_config).featurize(Ranking(testbed.CLICKER, "bench", None, None))
    times = []
    for _ in range(500):
        started = time.perf_counter()
        ranker.score(
            ranker.feed(ranking.candidates, ranking.user_features, ranking.item_features, ranking.item_features_mostly)
        )
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[50:])


def wait_ready(url: str, timeout_s: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the stack exited while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


def explain_latencies(url: str, users: list[str], n: int) -> list[float]:
    times = []
    for i in range(n):
        body = json.dumps({"instances": [{"user_id": users[i % len(users)]}]}).encode()
        request = urllib.request.Request(
            f"{url}/v1/models/{MODEL}:explain", data=body, headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return times


def cpu_seconds(endpoints: dict) -> dict[str, float]:
    """CPU time (user + system) of each process of the stack, by role."""
    import psutil

    pids = {name: s["pid"] for name, s in endpoints["services"].items()}
    for version, replicas in endpoints["predictors"].items():
        for replica, predictor in enumerate(replicas):
            pids[f"predictor-{version[-8:]}-{replica}"] = predictor["pid"]
    out = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        out[name] = times.user + times.system
    return out


# Histograms each role keeps, from the outside in: (label, metric, where it lives).
STAGES = (
    ("transformer's call to router and predictor", "kfloop_transformer_upstream_seconds", "transformer"),
    ("router's call to a predictor", "kfloop_router_upstream_seconds", "router"),
    ("predictor's predict (scoring, slate, audit wait)", "request_predict_seconds", "predictors"),
    ("predictor's audit fsync wait", "kfloop_predictor_audit_write_seconds", "predictors"),
)


def stage_buckets(endpoints: dict) -> dict[str, dict[float, float]]:
    """{stage label: {bucket bound: cumulative count}}, summed over a role's processes (predictor replicas);
    each process's /metrics is read once."""
    from prometheus_client.parser import text_string_to_metric_families

    urls = {"transformer": [endpoints["transformer"]], "router": [endpoints["router"]]}
    urls["predictors"] = [p["url"] for replicas in endpoints["predictors"].values() for p in replicas]
    out: dict[str, dict[float, float]] = {label: {} for label, _, _ in STAGES}
    for role, role_urls in urls.items():
        stages = {f"{metric}_bucket": label for label, metric, stage_role in STAGES if stage_role == role}
        for url in role_urls:
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
                text = response.read().decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    label = stages.get(sample.name)
                    if label is not None and sample.labels.get("outcome", "200") == "200":
                        bound = float(sample.labels["le"])
                        out[label][bound] = out[label].get(bound, 0.0) + sample.value
    return out


def report_stages(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]) -> None:
    """Which hop the slow requests of the last run spent their time in: the share of each stage's timings over
    10 and 25 ms. A stage far slower than its CPU says its process waited for a core, not for work."""
    print("          share over 10 / 25 ms, by stage:", flush=True)
    for label, counts in after.items():
        delta = {bound: n - before.get(label, {}).get(bound, 0.0) for bound, n in counts.items()}
        total = delta.get(float("inf"), 0.0)
        if total <= 0:
            continue
        over = [100 * (total - delta.get(bound, total)) / total for bound in (0.01, 0.025)]
        print(f"            {label}: {over[0]:.1f}% / {over[1]:.1f}% of {total:.0f}", flush=True)


async def load_runs(
    port: int, rates: list[int], seconds: float, warm_up: float, users: list[str], endpoints: dict
) -> list[tuple[int, float, float, int, float]]:
    """(rate, p50, p99, errors, CPU ms per request of the stack's processes) per rate. Each rate is run for
    `warm_up` seconds before it is measured: the first second after a rate change is a transient (the stack's
    queues and caches settling), not its rate."""
    pool = Pool("127.0.0.1", port)
    payloads = bodies(users)
    await fixed_rate(pool, 50, 2, payloads)  # connections, first requests
    rows = []
    for rate in rates:
        if warm_up > 0:
            await fixed_rate(pool, rate, warm_up, payloads)
        stages_before = stage_buckets(endpoints)
        before, client_before, host_before = cpu_seconds(endpoints), own_cpu_seconds(), host_seconds()
        started = time.perf_counter()
        latencies, errors = await fixed_rate(pool, rate, seconds, payloads)
        elapsed, client_s = time.perf_counter() - started, own_cpu_seconds() - client_before
        after, client = cpu_seconds(endpoints), client_s / len(latencies) * 1000
        p50, p99 = percentiles(latencies)
        per_request = {k: (after[k] - before[k]) / len(latencies) * 1000 for k in sorted(after)}
        rows.append((rate, p50, p99, errors, sum(per_request.values())))
        cpu = "  ".join(f"{k} {ms:.1f}" for k, ms in per_request.items())
        print(f"  {rate:>5} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   errors {errors}", flush=True)
        # the total is the host's pace: the same work costs up to 2x more CPU when the shared host is busy
        print(
            f"          CPU ms per request: {cpu}  (total {sum(per_request.values()):.1f}; the load generator, "
            f"on the same cores, {client:.2f})",
            flush=True,
        )
        ours_s = sum(after[k] - before[k] for k in after) + client_s
        if (host := host_line(host_before, ours_s, elapsed, len(latencies))) is not None:
            print(host, flush=True)
        if rate == TARGET_RATE:
            report_stages(stages_before, stage_buckets(endpoints))
        if p99 > 4 * CEILING_P99_MS:
            break
        await asyncio.sleep(1.0)
    return rows


@contextmanager
def running_stack(
    root: Path, bed: testbed.Testbed, explanation_rate: float, replicas: int, impressions: dict | None = None
) -> Iterator[dict]:
    """`kfloop serve`'s stack on the testbed, every part ready (the explainer too: it loads TensorFlow and
    Alibi for a while after the rest is up, and must not do that during a run); yields its endpoints.
    `impressions`: the predictors' impression logging section (none: no impressions logged)."""
    config = testbed.stack_config(
        bed, manifest=REPO / "manifests" / "serving" / "inferenceservice.yaml", explanation_rate=explanation_rate
    )
    name = f"{explanation_rate}{'-impressions' if impressions else ''}"
    state = root / f"state-{name}"
    config["stack"]["state_dir"] = str(state)
    config["stack"]["predictor_replicas"] = replicas
    if impressions:  # beside the other stack: its own spools and audit store
        config["predictor"]["impressions"] = impressions
        config["predictor"]["audit"]["spool"]["dir"] = str(root / f"spool-{name}")
        config["stack"]["audit_store_url"] = f"sqlite:///{root / f'audit-{name}.db'}"
    config_file = root / f"serving-{name}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    with open(root / f"stack-{name}.log", "wb") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "serving.local.stack", "--config", str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            try:
                endpoints = wait_stack_ready(state, stack)
            except RuntimeError as exc:  # why it exited is in its log
                tail = (root / f"stack-{name}.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{exc}; the end of its log:\n{tail}") from None
            yield endpoints
        finally:
            stop_process(stack, 60)


def wait_stack_ready(state: Path, stack: subprocess.Popen) -> dict:
    """The stack's endpoints once every part answers ready."""
    endpoints_file = state / "endpoints.json"
    deadline = time.monotonic() + 300
    while not endpoints_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    endpoints = json.loads(endpoints_file.read_text())
    wait_ready(f"{endpoints['router']}/readyz", 300, stack)
    wait_ready(f"{endpoints['transformer']}/v2/models/{MODEL}/ready", 300, stack)
    endpoints = json.loads(endpoints_file.read_text())
    wait_ready(f"{endpoints['explainer']}/v2/models/{MODEL}/ready", 300, stack)
    return endpoints


def report_rates(rows: list[tuple[int, float, float, int, float]], model_p50: float, n_candidates: int) -> None:
    passing = [r for r in rows if r[2] < CEILING_P99_MS and r[3] == 0]
    best = max(r[0] for r in passing) if passing else "none"
    print(f"\nhighest rate with p99 under {CEILING_P99_MS:.0f} ms: {best} req/s")
    at_target = next((r for r in rows if r[0] == TARGET_RATE), None)
    verdict = (
        "not reached"
        if at_target is None
        else ("met" if at_target[2] <= TARGET_P99_MS and at_target[3] == 0 else "NOT met")
    )
    detail = "" if at_target is None else f" (p99 {at_target[2]:.2f} ms)"
    print(f"target p99 <= {TARGET_P99_MS:.0f} ms at {TARGET_RATE} req/s on {os.cpu_count()} cores: {verdict}{detail}")
    print(
        f"in-process model call (features in hand, {n_candidates} candidates, SavedModel signature): "
        f"p50 {model_p50:.2f} ms"
    )
    for rate, p50, *_ in rows:
        print(f"  stack p50 at {rate} req/s: {p50 / model_p50:.1f}x the in-process call")


def report_explainer(latencies: list[float], n_candidates: int) -> None:
    p50, p99 = percentiles(latencies)
    print(
        f"\nexplainer (:explain through the transformer, IG + anchors for 3 items, {n_candidates} candidates, "
        f"sequential): p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(latencies)}"
    )


def compare_impression_logging(root: Path, bed: testbed.Testbed, args: argparse.Namespace, users, off: dict) -> None:
    """The target rate with impression logging on (a second stack, shipping to a collector) and off (the stack
    above), in alternated runs while both are up, so that both meet the same host pace."""
    print(
        f"\nranking at {TARGET_RATE} req/s with impression logging off and on, alternated (the logging stack's "
        "predictors ship every slate's impressions to a collector on the same cores; its CPU is counted):",
        flush=True,
    )
    collector, impressions = impression_runs.start_collector(root)
    try:
        with running_stack(root, bed, 0.0, args.predictor_replicas, impressions) as on:
            on["services"]["collector"] = {"pid": collector.pid}
            stacks = {"off": off, "on": on}
            rows: dict[str, list[tuple]] = {"off": [], "on": []}
            for _ in range(args.impression_rounds):
                for name, endpoints in stacks.items():
                    print(f"  impression logging {name}:", flush=True)
                    port = int(endpoints["transformer"].rsplit(":", 1)[1])
                    run = load_runs(port, [TARGET_RATE], args.seconds, args.warm_up, users, endpoints)
                    rows[name] += asyncio.run(run)
            time.sleep(2)  # the last shipper batches
            logged = impression_runs.predictor_total(on, "kfloop_predictor_impressions_logged")
            impression_runs.report(rows, logged, impression_runs.predictor_total(on, "kfloop_predictor_decisions"))
    finally:
        collector.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,100,150,200,250,300", help="request rates to try, req/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--warm-up", type=float, default=3.0, help="seconds at each rate before measuring it")
    parser.add_argument("--explanations", type=int, default=10, help="explain requests to time (0: none)")
    parser.add_argument(
        "--explanation-rate",
        type=float,
        default=0.001,
        help="background explanation sample for the extra run at the target rate (0: skip that run)",
    )
    parser.add_argument("--predictor-replicas", type=int, default=2, help="predictor processes per version")
    parser.add_argument(
        "--impression-rounds", type=int, default=2, help="alternated off/on runs of impression logging (0: none)"
    )
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    os.chdir(REPO)
    users = [testbed.CLICKER, testbed.BROWSER, "u-cold-1", "u-cold-2"]
    with tempfile.TemporaryDirectory(prefix="kfloop-bench-serving-") as tmp:
        root = Path(tmp)
        print("building the testbed (feature store, contract model) ...", flush=True)
        bed = testbed.build(root, versions=1, n_items=80, use_obd_sample=True)
        model_p50 = in_process_p50(root, bed.versions[0], bed.registry_uri, bed.items, bed.features)
        print("starting the stack (TensorFlow in each model server: about a minute) ...", flush=True)
        with running_stack(root, bed, 0.0, args.predictor_replicas) as endpoints:
            front = endpoints["transformer"]
            port = int(front.rsplit(":", 1)[1])
            print(
                f"\nranking, {len(bed.items)} candidates, transformer -> router -> predictor (audited), fixed rate, "
                f"{args.warm_up:.0f} s warm-up and {args.seconds:.0f} s measured per rate; background explanations "
                "off (the explainer is its own deployment, timed below):"
            )
            rows = asyncio.run(load_runs(port, rates, args.seconds, args.warm_up, users, endpoints))
            report_rates(rows, model_p50, len(bed.items))
            if args.explanations > 0:
                report_explainer(explain_latencies(front, users, args.explanations), len(bed.items))
            if args.impression_rounds > 0:
                compare_impression_logging(root, bed, args, users, endpoints)
        if args.explanation_rate > 0:
            print(
                f"\nthe same at {TARGET_RATE} req/s with background explanations of a {args.explanation_rate:g} "
                "sample on the same cores (explainer under SCHED_IDLE):",
                flush=True,
            )
            with running_stack(root, bed, args.explanation_rate, args.predictor_replicas) as endpoints:
                port = int(endpoints["transformer"].rsplit(":", 1)[1])
                asyncio.run(load_runs(port, [TARGET_RATE], args.seconds, args.warm_up, users, endpoints))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
