"""Collector benchmark: a real collector subprocess on loopback, durable (fsynced) writes.

    .venvs/serving/bin/python tests/bench/bench_collector.py [--seconds 8] [--clients 4]

Prints batch throughput (events/s, batches of 100, concurrent clients) and single-event acknowledgement
latency (sequential), each next to its target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

from kfloop.eventlog import read_events
from serving.common.process import ServiceProcess

BATCH = 100
TARGET_EVENTS_PER_S = 10_000
TARGET_P99_MS = 10.0
HEADERS = {"Content-Type": "application/json"}


def body(prefix: str, start: int, count: int) -> bytes:
    events = [
        {
            "event_id": f"{prefix}-{n}",
            "type": "impression",
            "user_id": f"u-{n % 5000}",
            "item_id": f"item-{n % 80}",
            "position": n % 3 + 1,
            "propensity": 0.0125,
            "request_id": f"r-{n // 3}",
            "ts": "2026-11-23T10:00:00.000Z",
            "consent": {"personalization": True, "analytics": True},
            "model_version": "v7",
            "variant": "stable",
        }
        for n in range(start, start + count)
    ]
    return json.dumps(events if count > 1 else events[0]).encode()


def post(conn: http.client.HTTPConnection, payload: bytes) -> dict:
    conn.request("POST", "/v1/events", body=payload, headers=HEADERS)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    return json.loads(data)


def throughput(host: str, port: int, clients: int, seconds: float) -> tuple[float, int]:
    """Events/s acknowledged with batches of BATCH across `clients` keep-alive connections."""
    # bodies are built before the clock starts, so the client's JSON encoding is not measured
    per_client = int(seconds * 40_000 / BATCH / clients) + 10
    bodies = [[body(f"t{c}", i * BATCH, BATCH) for i in range(per_client)] for c in range(clients)]
    accepted = [0] * clients
    stop_at = time.perf_counter() + seconds + 1.0  # the first second is warm-up
    warm_until = stop_at - seconds
    counted = [0] * clients

    def run(c: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        for payload in bodies[c]:
            if time.perf_counter() >= stop_at:
                break
            result = post(conn, payload)
            accepted[c] += result["accepted"]
            if time.perf_counter() >= warm_until:
                counted[c] += BATCH
        conn.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counted) / seconds, sum(accepted)


def latency(host: str, port: int, requests: int) -> list[float]:
    """Milliseconds from sending one event to reading its acknowledgement, sequentially."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    payloads = [body("s", n, 1) for n in range(requests + 200)]
    for payload in payloads[:200]:  # warm-up
        post(conn, payload)
    samples = []
    for payload in payloads[200:]:
        started = time.perf_counter()
        post(conn, payload)
        samples.append((time.perf_counter() - started) * 1000)
    conn.close()
    return samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to judge efficiency on a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=1000, method="inclusive")[int(q * 1000) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured duration of the throughput run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections for the throughput run")
    parser.add_argument("--requests", type=int, default=3000, help="sequential single-event requests")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        root = Path(tmp)
        config = {"writer_id": "bench", "event_log": {"wal_dir": str(root / "wal"), "log_uri": str(root / "log")}}
        (root / "collector.yaml").write_text(yaml.safe_dump(config))
        collector = ServiceProcess(
            "serving.collector", ["--config", str(root / "collector.yaml")], log_path=root / "log.txt"
        )
        with collector:
            cpu_before = cpu_seconds(collector.pid)
            rate, accepted = throughput(collector.host, collector.port, args.clients, args.seconds)
            server_cpu = cpu_seconds(collector.pid) - cpu_before
            samples = latency(collector.host, collector.port, args.requests)
        stored = read_events(str(root / "log"), columns=["event_id"]).num_rows

    p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)
    print(f"collector, durable (fsync) writes, loopback, {args.clients} clients x batches of {BATCH}")
    met = verdict(rate >= TARGET_EVENTS_PER_S)
    print(f"  throughput      {rate:>10,.0f} events/s   target >= {TARGET_EVENTS_PER_S:,}   {met}")
    per_event_us = server_cpu * 1e6 / accepted
    print(f"  server CPU      {per_event_us:>10.1f} us per event (all its threads; {os.cpu_count()} cores here)")
    print(f"  single-event    p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   max {max(samples):6.2f} ms")
    print(f"                  target p99 <= {TARGET_P99_MS:g} ms   {verdict(p99 <= TARGET_P99_MS)}")
    print(f"  events acknowledged {accepted + len(samples) + 200:,}; sealed in the log after shutdown {stored:,}")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    main()
