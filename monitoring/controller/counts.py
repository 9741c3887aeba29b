"""The per-arm counts an experiment's test is evaluated on: the joiner's impression and click counters, read
from its /metrics (`kfloop_joiner_impressions_total`, `kfloop_joiner_clicks_total` by model_version and
variant). The same URL form works locally and on a cluster (the joiner's Service), and reading the joiner
itself, not Prometheus, sees every count at once, not a scrape interval later. A shadow stage's mirrored requests
are counted from the local router's /metrics the same way.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from kfloop.errors import NotReady
from kfloop.experiments import ArmCounts

Counts = dict[tuple[str, str], ArmCounts]
"""(model_version, variant) -> cumulative impressions and clicks."""
_NAMES = {"kfloop_joiner_impressions": "impressions", "kfloop_joiner_clicks": "clicks"}


def parse_counts(text: str) -> Counts:
    """The joiner's counters in Prometheus text form, by (model_version, variant)."""
    raw: dict[tuple[str, str], dict[str, int]] = {}
    for family in text_string_to_metric_families(text):
        field = _NAMES.get(family.name)
        if field is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (sample.labels["model_version"], sample.labels["variant"])
                raw.setdefault(key, {"impressions": 0, "clicks": 0})[field] = int(sample.value)
    return {key: ArmCounts(**values) for key, values in raw.items()}


def read_counts(url: str, timeout_s: float = 5.0) -> Counts:
    """The joiner's counts now; NotReady when it cannot be read (the stage waits and tries again)."""
    return parse_counts(_metrics_text(url, timeout_s))


def parse_mirrored(text: str, version: str) -> int:
    """Mirrored requests the shadow `version` answered well, from the router's metrics text."""
    wanted = {"role": "router", "variant": "shadow", "model_version": version, "code": "200"}
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "kfloop_ranking_requests":
            total += sum(
                s.value
                for s in family.samples
                if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in wanted.items())
            )
    return int(total)


def read_mirrored(url: str, version: str, timeout_s: float = 5.0) -> int:
    return parse_mirrored(_metrics_text(url, timeout_s), version)


def _metrics_text(url: str, timeout_s: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NotReady(f"the metrics at {url} cannot be read: {exc}") from None


def since(now: Counts, baseline: dict[str, list[int]], key: tuple[str, str]) -> ArmCounts:
    """An arm's counts since the stage started (its counters minus the baseline recorded then); never below
    zero (a joiner that restarted replays its log and counts up to where it was)."""
    current = now.get(key, ArmCounts(impressions=0, clicks=0))
    start_impressions, start_clicks = baseline.get("/".join(key), [0, 0])
    impressions = max(current.impressions - start_impressions, 0)
    clicks = min(max(current.clicks - start_clicks, 0), impressions)
    return ArmCounts(impressions=impressions, clicks=clicks)


def baseline_of(now: Counts, keys: list[tuple[str, str]]) -> dict[str, list[int]]:
    """The arms' counters as a stage's baseline: {"version/variant": [impressions, clicks]}."""
    empty = ArmCounts(impressions=0, clicks=0)
    return {"/".join(key): [now.get(key, empty).impressions, now.get(key, empty).clicks] for key in keys}
