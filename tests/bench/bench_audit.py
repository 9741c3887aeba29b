"""Audit trail throughput: store appends, verify and export speed, spool appends. Prints numbers.

    .venvs/serving/bin/python -m tests.bench.bench_audit [--records 50000] [--postgres]

--postgres starts a throwaway PostgreSQL server (needs the pg8000 driver in the environment).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kfloop.audit import FORMATS, Spool, verify_file, verify_store, write_export
from kfloop.audit.store import SqlStore
from kfloop.audit.store.sqlite import SqliteStore
from tests.unit.test_audit_support import decisions


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_store(name: str, store: SqlStore, n: int, workdir: Path) -> None:
    records = decisions(n)
    for batch in (500, 100):
        part = records[: n // 2] if batch == 500 else records[n // 2 :]
        seconds = timed(lambda b=batch, p=part: [store.append(p[i : i + b]) for i in range(0, len(p), b)])
        print(f"{name}: append, batches of {batch:>3}: {len(part) / seconds:>9,.0f} records/s")
    singles = decisions(200, start=n)
    latencies = []
    for record in singles:
        latencies.append(timed(lambda r=record: store.append([r])) * 1000)
    q = statistics.quantiles(latencies, n=100)
    print(f"{name}: append, one at a time:  p50 {q[49]:.2f} ms  p99 {q[98]:.2f} ms")
    total = n + len(singles)
    seconds = timed(lambda: verify_store(store))
    print(f"{name}: verify store:          {total / seconds:>9,.0f} records/s ({total:,} in {seconds:.2f} s)")
    for fmt in FORMATS:
        out = workdir / f"{name}.{fmt}"
        write = timed(lambda f=fmt, o=out: write_export(store.rows(), o, f))
        check = timed(lambda o=out: verify_file(o))
        print(
            f"{name}: {fmt:<7} export {total / write:>9,.0f} records/s, verify {total / check:>9,.0f} records/s, "
            f"{out.stat().st_size / total:,.0f} bytes/record"
        )


def bench_spool(workdir: Path) -> None:
    with Spool(workdir / "spool") as spool:
        records = decisions(2000)
        latencies = [timed(lambda r=r: spool.append([r])) * 1000 for r in records]
        q = statistics.quantiles(latencies, n=100)
        print(f"spool: append + fsync, one record: p50 {q[49]:.2f} ms  p99 {q[98]:.2f} ms")
        seconds = timed(lambda: [spool.append(records[i : i + 100]) for i in range(0, 2000, 100)])
        print(f"spool: append + fsync, batches of 100: {2000 / seconds:>9,.0f} records/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfloop-bench-audit-") as tmp:
        workdir = Path(tmp)
        with SqliteStore(workdir / "audit.db") as store:
            bench_store("sqlite", store, args.records, workdir)
        bench_spool(workdir)
        if args.postgres:
            from kfloop.audit.store.postgres import PostgresStore
            from tests.integration.pg_server import postgres_server

            with postgres_server() as server:
                store = PostgresStore(server.url())
                store.open()
                try:
                    bench_store("postgres", store, args.records, workdir)
                finally:
                    store.close()


if __name__ == "__main__":
    main()
