"""Counts of a run, its live progress line (stderr) and its closing summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from kfloop.simulate.truth import RankingTruth


@dataclass
class VariantTally:
    """Slates one variant served, their slots, realized and expected clicks."""

    slates: int = 0
    slots: int = 0
    clicks: int = 0
    expected: float = 0.0

    def ctr(self) -> float | None:
        return self.clicks / self.slots if self.slots else None

    def expected_ctr(self) -> float | None:
        return self.expected / self.slots if self.slots else None


@dataclass
class Stats:
    planned: int
    sent: int = 0
    answered: int = 0
    skipped: int = 0
    """Due while `max_in_flight` rankings were waiting: not sent (open loop: never queued)."""
    unmodelled: int = 0
    feedback_stored: int = 0
    """Feedback events the collector accepted (or had already: a resend)."""
    errors: Counter[str] = field(default_factory=Counter)
    variants: dict[str, VariantTally] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def add_ranking(self, record: RankingTruth) -> None:
        self.answered += 1
        self.unmodelled += record.unmodelled
        self.latencies_ms.append(record.latency_ms)
        tally = self.variants.setdefault(record.variant or "-", VariantTally())
        tally.slates += 1
        tally.slots += len(record.items)
        tally.clicks += sum(record.clicks)
        tally.expected += sum(record.expected_clicks)

    def error(self, where: str, kind: str | int) -> None:
        self.errors[f"{where} {kind}"] += 1

    def line(self, elapsed_s: float, rate: float) -> str:
        variants = " | ".join(
            f"{name} {t.slates}: CTR {_pct(t.ctr())} exp {_pct(t.expected_ctr())}"
            for name, t in sorted(self.variants.items())
        )
        return (
            f"[{elapsed_s:6.1f}s] {rate:6.1f}/s  sent {self.sent}/{self.planned}  ok {self.answered}  "
            f"errors {sum(self.errors.values())}  skipped {self.skipped}  feedback {self.feedback_stored}"
            + (f" | {variants}" if variants else "")
        )

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        latencies = np.asarray(self.latencies_ms) if self.latencies_ms else None
        return {
            "planned": self.planned,
            "sent": self.sent,
            "answered": self.answered,
            "skipped": self.skipped,
            "errors": dict(sorted(self.errors.items())),
            "elapsed_s": round(elapsed_s, 3),
            "answered_per_s": round(self.answered / elapsed_s, 2) if elapsed_s > 0 else None,
            "latency_ms": None
            if latencies is None
            else {q: round(float(np.percentile(latencies, p)), 2) for q, p in (("p50", 50), ("p99", 99))},
            "feedback_events_stored": self.feedback_stored,
            "unmodelled_slots": self.unmodelled,
            "variants": {
                name: {**vars(t), "expected": round(t.expected, 4), "ctr": t.ctr(), "expected_ctr": t.expected_ctr()}
                for name, t in sorted(self.variants.items())
            },
        }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


class ProgressLine:
    """Rewrites one line on a terminal; elsewhere (a log file) prints a line every `plain_every_s`."""

    def __init__(self, stream: TextIO, *, enabled: bool, plain_every_s: float = 10.0) -> None:
        self.stream, self.enabled = stream, enabled
        self.live = enabled and stream.isatty()
        self.plain_every_s = plain_every_s
        self._last_plain = 0.0
        self._last = (0.0, 0)

    def rate(self, elapsed_s: float, answered: int) -> float:
        then, count = self._last
        self._last = (elapsed_s, answered)
        return (answered - count) / (elapsed_s - then) if elapsed_s > then else 0.0

    def show(self, stats: Stats, elapsed_s: float) -> None:
        if not self.enabled:
            return
        text = stats.line(elapsed_s, self.rate(elapsed_s, stats.answered))
        if self.live:
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
        elif elapsed_s - self._last_plain >= self.plain_every_s:
            self._last_plain = elapsed_s
            print(text, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        """A message on its own line (a warning), not overwritten by the next update."""
        self.stream.write(("\r\x1b[K" if self.live else "") + text + "\n")
        self.stream.flush()

    def finish(self, stats: Stats, elapsed_s: float) -> None:
        if self.enabled:
            self.message(stats.line(elapsed_s, stats.answered / elapsed_s if elapsed_s > 0 else 0.0))
