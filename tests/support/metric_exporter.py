"""A small Prometheus exporter whose series a test or a benchmark sets by writing a JSON spec file, for what the real
exporters take minutes to show (a drift window, a CTR reference window). Prometheus scrapes it like any part.

    python -m tests.support.metric_exporter --port PORT --spec FILE

The spec: `{"series": [{"name": ..., "labels": {...}, "value": 0.3}, {"name": ..._total, "labels": {...},
"rate": 100.0}]}`. A series with `value` is a gauge; one with `rate` a counter growing by that much per second,
from when it first appears (a rate change applies from the scrape that sees the new spec). The spec is read again
whenever its file changes; write it atomically (write_spec).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def system_part(spec: Path, port: int, name: str = "exporter") -> dict[str, Any]:
    """The exporter as a part of a `kfloop up` system file: Prometheus scrapes it as job `kfloop-{name}`."""
    url = f"http://127.0.0.1:{port}/metrics"
    return {
        "name": name,
        "command": [sys.executable, "-m", "tests.support.metric_exporter", "--port", "{port}", "--spec", str(spec)],
        "port": port,
        "ready_urls": [url],
        "metrics_url": url,
    }


def write_spec(path: Path, series: list[dict[str, Any]]) -> None:
    """Replace the spec atomically (the exporter never reads half a file)."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps({"series": series}))
    os.replace(temp, path)


def _key(series: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return series["name"], tuple(sorted(series.get("labels", {}).items()))


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


class Series:
    """The spec as last read, and each counter's running total."""

    def __init__(self, spec: Path) -> None:
        self.spec = spec
        self.lock = threading.Lock()
        self.seen: float | None = None
        self.current: list[dict[str, Any]] = []
        self.totals: dict[tuple, float] = {}
        self.at: float = time.monotonic()

    def _reload(self) -> None:
        try:
            mtime = self.spec.stat().st_mtime
        except FileNotFoundError:
            self.current = []
            return
        if mtime != self.seen:
            self.current = json.loads(self.spec.read_text())["series"]
            self.seen = mtime

    def text(self) -> str:
        with self.lock:
            now = time.monotonic()
            elapsed, self.at = now - self.at, now
            for series in self.current:  # counters grow at the rates in force until now
                if "rate" in series:
                    self.totals[_key(series)] = self.totals.get(_key(series), 0.0) + series["rate"] * elapsed
            self._reload()
            lines = []
            for series in self.current:
                name, labels = _key(series)
                kind = "counter" if "rate" in series else "gauge"
                value = self.totals.setdefault((name, labels), 0.0) if kind == "counter" else series["value"]
                lines += [f"# TYPE {name} {kind}", f"{name}{_labels(labels)} {value}"]
            return "\n".join(lines) + "\n"


def serve(port: int, spec: Path) -> None:
    series = Series(spec)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = series.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # one line per scrape says nothing
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.metric_exporter", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spec", type=Path, required=True, help="the JSON spec file (absent: no series)")
    args = parser.parse_args(argv)
    serve(args.port, args.spec)


if __name__ == "__main__":
    main()
