"""The simulator's sustained rankings/s with feedback, driving the whole local loop on the same 2 cores.

The stack `kfloop serve` runs (transformer, router, two predictor replicas, explainer idle, audit sink) on the
testbed with the OBD sample's 80 items, a collector (`kfloop collector`, fsynced event log), and the simulator
in this process (`kfloop.simulate`: rankings through the front door at a fixed rate, open loop, clicks to the
collector). Each run offers `--rate` rankings/s for `--seconds`; sustained = rankings answered per second of
the run. Three runs after a warm-up; printed per run with the CPU per ranking of the stack's processes, the
collector and the simulator, then the median and spread of the sustained rate beside the target (>= 150/s).

    .venvs/serving/bin/python tests/bench/bench_simulate.py [--rate 200] [--seconds 15] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from kfloop.simulate import ClickWorld, SimulateConfig, Simulation
from serving.common.process import ServiceProcess
from tests.bench.bench_serving import cpu_seconds, host_line, host_seconds, own_cpu_seconds, running_stack
from tests.support import testbed

REPO = Path(__file__).resolve().parents[2]
TARGET_RATE = 150


def start_collector(root: Path) -> ServiceProcess:
    config = root / "collector.yaml"
    events = {"wal_dir": str(root / "events-wal"), "log_uri": str(root / "events")}
    config.write_text(yaml.safe_dump({"writer_id": "bench-simulate", "event_log": events}))
    return ServiceProcess("kfloop", ["collector", "--config", str(config)], log_path=root / "collector.log").start(
        timeout_s=120
    )


def cpu_by_part(endpoints: dict, collector: ServiceProcess) -> dict[str, float]:
    """CPU seconds so far of each stack process, the collector and this process (the simulator)."""
    times = psutil.Process(collector.pid).cpu_times()
    return {**cpu_seconds(endpoints), "collector": times.user + times.system, "simulator": own_cpu_seconds()}


def one_run(world: ClickWorld, root: Path, name: str, args: argparse.Namespace, endpoints: dict, collector) -> dict:
    config = SimulateConfig(
        transformer_url=endpoints["transformer"],
        collector_url=collector.url,
        rate=args.rate,
        duration_s=args.seconds,
        max_in_flight=args.max_in_flight,
        run_id=name,
        out_dir=root / "runs",
        progress=False,
    )
    before, host_before, started = cpu_by_part(endpoints, collector), host_seconds(), time.perf_counter()
    summary = Simulation(config, world).run()
    elapsed, after = time.perf_counter() - started, cpu_by_part(endpoints, collector)
    answered = max(summary["answered"], 1)
    per_ranking = {part: (after[part] - before[part]) / answered * 1000 for part in sorted(after)}
    return {
        "summary": summary,
        "cpu": per_ranking,
        "host": host_line(host_before, sum(after[p] - before[p] for p in after), elapsed, answered),
    }


def report_run(name: str, run: dict, rate: float) -> None:
    summary, cpu = run["summary"], run["cpu"]
    latency = summary["latency_ms"] or {"p50": float("nan"), "p99": float("nan")}
    stable = summary["variants"].get("stable", {})
    print(
        f"  {name}: offered {rate:g}/s  sustained {summary['answered_per_s']:.1f}/s  "
        f"errors {sum(summary['errors'].values())}  skipped {summary['skipped']}  "
        f"p50 {latency['p50']:.1f} ms  p99 {latency['p99']:.1f} ms  "
        f"clicks {stable.get('clicks', 0)} (expected {stable.get('expected', 0):.0f}), "
        f"{summary['feedback_events_stored']} feedback events stored",
        flush=True,
    )
    stack = {k: v for k, v in cpu.items() if k not in ("collector", "simulator")}
    parts = "  ".join(f"{k} {v:.2f}" for k, v in stack.items())
    print(
        f"        CPU ms per ranking: stack {sum(stack.values()):.2f} ({parts}); collector {cpu['collector']:.2f}; "
        f"simulator {cpu['simulator']:.2f}; total {sum(cpu.values()):.2f}",
        flush=True,
    )
    if run["host"]:
        print("  " + run["host"].strip(), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="rankings/s offered (open loop)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="measured runs")
    parser.add_argument("--warm-up", type=float, default=3.0, help="seconds of traffic before the runs")
    parser.add_argument("--max-in-flight", type=int, default=32, help="rankings waiting at most (the rest skipped)")
    args = parser.parse_args()
    os.chdir(REPO)
    with tempfile.TemporaryDirectory(prefix="kfloop-bench-simulate-") as tmp:
        root = Path(tmp)
        print("building the testbed (feature store, contract model) and the click model ...", flush=True)
        bed = testbed.build(root, versions=1, n_items=80, use_obd_sample=True)
        world = ClickWorld.from_obd(REPO / "data", logit_shift=SimulateConfig().logit_shift)
        collector = start_collector(root)
        try:
            print("starting the stack (TensorFlow in each model server: about a minute) ...", flush=True)
            with running_stack(root, bed, 0.0, 2) as endpoints:
                warm = argparse.Namespace(**{**vars(args), "seconds": args.warm_up})
                one_run(world, root, "warm-up", warm, endpoints, collector)
                print(f"\nsimulator, stack and collector on {os.cpu_count()} cores:", flush=True)
                runs = [one_run(world, root, f"run-{n}", args, endpoints, collector) for n in range(1, args.runs + 1)]
                for n, run in enumerate(runs, start=1):
                    report_run(f"run {n}", run, args.rate)
        finally:
            collector.stop()
    sustained = [run["summary"]["answered_per_s"] for run in runs]
    errors = sum(sum(run["summary"]["errors"].values()) for run in runs)
    median = statistics.median(sustained)
    verdict = "met" if median >= TARGET_RATE and errors == 0 else "NOT met"
    print(
        f"\nsustained rankings/s with feedback: median {median:.1f}, spread {min(sustained):.1f}-{max(sustained):.1f} "
        f"over {len(runs)} runs at {args.rate:g}/s offered; target >= {TARGET_RATE}/s: {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
