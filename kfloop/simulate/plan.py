"""What is random in a run, drawn from the seed so that the same seed gives the same run.

Each stream is its own generator, keyed by (seed, stream[, request index]): the population and the scenario
are drawn once; request i draws its user, then (once its slate is known) a uniform per slot for the clicks,
then the dwell times, from the generator of (seed, REQUESTS, i). So request i's user and its clicks given the
same slate do not depend on the order the answers come back in, or on how many requests ran before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

POPULATION, SCENARIO, REQUESTS = 0, 1, 2
DWELL_MEDIAN_MS, DWELL_SIGMA = 20_000.0, 1.0
CONSENT = {"personalization": True, "analytics": True}


def stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


@dataclass
class Draw:
    """Request i's random choices: its user now, its clicks and dwell times once the slate is known."""

    user: int
    rng: np.random.Generator

    def clicks(self, expected: list[float]) -> list[int]:
        """One Bernoulli draw per slot with that slot's click probability."""
        uniforms = self.rng.random(len(expected))
        return [int(u < p) for u, p in zip(uniforms.tolist(), expected, strict=True)]

    def dwell_ms(self, n: int) -> list[int]:
        """Log-normal dwell times (median 20 s), capped at a day as the event schema requires."""
        values = self.rng.lognormal(math.log(DWELL_MEDIAN_MS), DWELL_SIGMA, size=n)
        return [min(int(v), 86_400_000) for v in values.tolist()]


def draw(seed: int, index: int, n_users: int) -> Draw:
    rng = stream(seed, REQUESTS, index)
    return Draw(int(rng.integers(n_users)), rng)


def request_id(run_id: str, index: int) -> str:
    return f"sim-{run_id}-{index:07d}"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def feedback_events(record: Any, dwell_ms: list[int] | None, now: datetime) -> list[dict[str, Any]]:
    """A click event for each clicked slot of a ranking record (and a dwell event each, when given), naming the
    decision by request id; event ids are deterministic, so a resend is stored once."""
    common: dict[str, Any] = {"request_id": record.request_id, "user_id": record.user_id, "ts": iso(now)}
    common["consent"] = CONSENT
    for name in ("model_version", "variant"):
        if getattr(record, name):
            common[name] = getattr(record, name)
    events = []
    clicked = [slot for slot, click in enumerate(record.clicks) if click]
    for n, slot in enumerate(clicked):
        item, position = record.items[slot], record.positions[slot]
        click_id = f"{record.request_id}-p{position}-click"
        events.append({**common, "event_id": click_id, "type": "click", "item_id": item, "position": position})
        if dwell_ms is not None:
            dwell_id = f"{record.request_id}-p{position}-dwell"
            events.append({**common, "event_id": dwell_id, "type": "dwell", "item_id": item, "dwell_ms": dwell_ms[n]})
    return events
