"""What the demo sees while it runs: the system's live status sampled every few seconds (recorded in
`run/samples.jsonl` for the report) and the live terminal view (phase, elapsed, CTR per variant, firing alerts,
the controller's last actions)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from kfloop.simulate.truth import RANKINGS_FILE

SAMPLES_FILE = "samples.jsonl"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RankingTail:
    """Counts per variant of the simulator's rankings file, read incrementally as it grows."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.offset = 0
        self.tally: dict[str, list[float]] = {}  # variant -> [slots, clicks, expected]

    def follow(self, run_dir: Path) -> None:
        self.path, self.offset, self.tally = run_dir / RANKINGS_FILE, 0, {}

    def read(self) -> dict[str, dict[str, float]]:
        if self.path is not None and self.path.exists():
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                for line in handle:
                    if not line.endswith(b"\n"):
                        break  # a line being written: read it next time
                    self.offset += len(line)
                    record = json.loads(line)
                    key = f"{record.get('variant') or '-'} {record.get('model_version') or '-'}"
                    slots, clicks, expected = self.tally.setdefault(key, [0, 0, 0.0])
                    self.tally[key] = [
                        slots + len(record["items"]),
                        clicks + sum(record["clicks"]),
                        expected + sum(record["expected_clicks"]),
                    ]
        return {k: {"slots": s, "ctr": c / s, "expected_ctr": e / s} for k, (s, c, e) in self.tally.items() if s}


def summarize(live: dict[str, Any]) -> dict[str, Any]:
    """The parts of `kfloop status --json` the demo records: serving split, firing alerts, the last actions."""
    monitoring = live.get("monitoring") or {}
    prometheus = monitoring.get("prometheus") or {}
    controller = monitoring.get("controller") or {}
    return {
        "serving": live.get("serving"),
        "alerts": [
            {"name": a["name"], "state": a["state"], "labels": a["labels"]} for a in prometheus.get("alerts", [])
        ],
        "actions": [
            {k: a.get(k) for k in ("id", "created_at", "kind", "phase", "outcome", "model_version", "reason")}
            for a in controller.get("recent", [])
        ],
        "experiments": controller.get("experiments", []),  # issue 19's controller reports its experiments here
    }


class Watcher:
    """Samples the system every `interval_s` in a thread, records each sample, redraws the terminal view."""

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        run_dir: Path,
        *,
        interval_s: float = 2.0,
        view_every_s: float = 10.0,
        out: TextIO = sys.stdout,
    ) -> None:
        self.status, self.interval_s, self.out = status, interval_s, out
        self.samples = run_dir / SAMPLES_FILE
        self.rankings = RankingTail()
        self.phase, self.started = "starting", time.monotonic()
        self.phase_started = self.started
        self.latest: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-watch", daemon=True)
        self.view_every_s, self._shown = view_every_s, 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def enter(self, phase: str) -> None:
        self.phase, self.phase_started = phase, time.monotonic()

    def _run(self) -> None:
        with open(self.samples, "a") as handle:
            while not self._stop.wait(self.interval_s):
                try:
                    sample = {"at": now_iso(), "phase": self.phase, **summarize(self.status())}
                except Exception as exc:  # the view must not end the demo; the sample says why it is empty
                    sample = {"at": now_iso(), "phase": self.phase, "error": repr(exc)[:200]}
                sample["ctr"] = self.rankings.read()
                self.latest = sample
                handle.write(json.dumps(sample) + "\n")
                handle.flush()
                self.show(sample)

    def show(self, sample: dict[str, Any]) -> None:
        """The view, every `view_every_s` (a block of lines; phase changes print on their own)."""
        if time.monotonic() - self._shown < self.view_every_s:
            return
        self._shown = time.monotonic()
        lines = view_lines(sample, self._shown - self.started, self._shown - self.phase_started)
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


def view_lines(sample: dict[str, Any], elapsed_s: float, phase_s: float) -> list[str]:
    """The live view's lines for one sample."""
    lines = [f"== {sample['phase']}  ({phase_s:.0f} s in phase, {elapsed_s:.0f} s since the start)"]
    served = sample.get("serving") or {}
    if served.get("stable"):
        split = f"stable {served['stable']} {served['stable_percent']}%"
        if served.get("canary"):
            split += f", canary {served['canary']} {served['canary_percent']}%"
        lines.append(f"   serving: {split}")
    for variant, tally in sorted(sample.get("ctr", {}).items()):
        lines.append(
            f"   CTR {variant}: {100 * tally['ctr']:.2f}% (expected {100 * tally['expected_ctr']:.2f}%) "
            f"over {tally['slots']:.0f} slots"
        )
    firing = Counter(a["name"] for a in sample.get("alerts", []) if a["state"] == "firing")
    shown = ", ".join(f"{name} x{count}" if count > 1 else name for name, count in sorted(firing.items()))
    lines.append(f"   alerts firing: {shown or 'none'}")
    for action in sample.get("actions", [])[:3]:
        lines.append(
            f"   action {action['created_at']} {action['kind']} {action.get('outcome') or action.get('phase')}"
        )
    return lines
