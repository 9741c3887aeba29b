"""CPU the predictor's metrics add to a ranking request, and the drift update's cost off the request path.
Prints numbers.

    .venvs/serving/bin/python -m tests.bench.bench_predictor_metrics [--rankings 20000]

The request path gains: `observe_slate` (the shown items' scores into a histogram; their inputs binned into the
baseline's bins and appended to the drift window), `observe_answer` (the request counter and time histogram),
and the `RankingAnswers` middleware around each ranking request. Inputs are shaped as the contract model's feed
(8 string, 18 int, 21 float inputs; 80 candidates; 3 shown), with a baseline histogram for every input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kfloop.registry import ModelCard
from kfloop.registry.card import Blessing
from serving.common.ranking_metrics import RankingAnswers
from serving.common.versions import ResolvedVersion
from serving.predictor.config import DriftConfig
from serving.predictor.metrics import PredictorMetrics

KINDS = {"string": 8, "int": 18, "float": 21}
CANDIDATES, SHOWN = 80, 3


def columns() -> dict[str, list[str]]:
    return {kind: [f"{kind}_{i}" for i in range(n)] for kind, n in KINDS.items()}


def feeds(rng: np.random.Generator, count: int) -> list[dict[str, np.ndarray]]:
    """Input matrices per ranking: strings from 100 values, counts, rates."""
    out = []
    for _ in range(count):
        strings = rng.integers(0, 100, (CANDIDATES, KINDS["string"])).astype(str).astype(object)
        ints = rng.poisson(2.0, (CANDIDATES, KINDS["int"])).astype(np.int64)
        floats = rng.normal(0.05, 0.02, (CANDIDATES, KINDS["float"]))
        out.append({"string": strings, "int": ints, "float": floats})
    return out


def baseline(rng: np.random.Generator) -> dict[str, Any]:
    """A histogram for every input, as Validate writes them (10 quantile bins; the 50 most frequent values)."""
    sample = feeds(rng, 50)
    features: dict[str, Any] = {}
    for kind, names in columns().items():
        values = np.concatenate([f[kind] for f in sample])
        for j, name in enumerate(names):
            column = values[:, j]
            if kind == "string":
                kept, counts = np.unique(column.astype(str), return_counts=True)
                order = np.argsort(-counts)[:50]
                fractions = {str(kept[i]): float(counts[i] / len(column)) for i in order}
                fractions["__other__"] = 1.0 - sum(fractions.values())
                features[name] = {"kind": "categorical", "fractions": fractions}
            else:
                edges = np.unique(np.quantile(column.astype(float), np.linspace(0, 1, 11)))
                counts, _ = np.histogram(column.astype(float), bins=edges)
                features[name] = {
                    "kind": "numeric",
                    "edges": edges.tolist(),
                    "fractions": (counts / counts.sum()).tolist(),
                }
    return {"format": "kfloop-baseline-v1", "rows": 4000, "features": features}


def predictor_metrics(workdir: Path, rng: np.random.Generator) -> PredictorMetrics:
    path = workdir / "baseline.json"
    path.write_text(json.dumps(baseline(rng)))
    card = ModelCard(
        version="v-bench",
        created_at="2026-12-01T00:00:00Z",
        fingerprint="f",
        data_version="d",
        schema_version="s",
        code_version="c",
        blessing=Blessing(blessed=True),
    )
    resolved = ResolvedVersion("v-bench", workdir, None, card, path)
    return PredictorMetrics(resolved, "stable", DriftConfig())


def cpu_us(fn: Callable[[int], object], n: int) -> float:
    """This thread's CPU time per call of fn(i), over n calls (CPU, not wall time: on a busy machine the wall
    time mostly measures the other processes)."""
    started = time.thread_time()
    for i in range(n):
        fn(i)
    return (time.thread_time() - started) / n * 1e6


def bench_request_path(metrics: PredictorMetrics, rankings: int, rng: np.random.Generator) -> None:
    inputs = feeds(rng, 200)
    scores = rng.random(CANDIDATES)
    slates = [[int(s) for s in rng.choice(CANDIDATES, SHOWN, replace=False)] for _ in range(len(inputs))]
    slate_us = cpu_us(lambda i: metrics.observe_slate("stable", inputs[i % 200], slates[i % 200], scores), rankings)
    answer_us = cpu_us(lambda i: metrics.observe_answer("stable", 200, 0.002), rankings)
    print(f"observe_slate  (scores, drift binning: {SHOWN} shown of {CANDIDATES}): {slate_us:6.1f} us CPU a ranking")
    print(f"observe_answer (request counter, time histogram):         {answer_us:6.1f} us CPU a request")


def bench_drift_update(metrics: PredictorMetrics) -> None:
    window = metrics.windows["stable"]
    update_ms = cpu_us(lambda i: metrics.update_drift(), 20) / 1000
    print(
        f"drift update, off the request path ({window.filled} shown items x {len(window.features)} inputs): "
        f"{update_ms:.2f} ms CPU, every {metrics.drift.update_interval_s:g} s"
    )


class _Models:
    def __init__(self, model: Any) -> None:
        self.model = model

    def get_model(self, name: str) -> Any:
        return self.model


class _Dataplane:
    def __init__(self, model: Any) -> None:
        self.model_registry = _Models(model)


def bench_middleware(metrics: PredictorMetrics, rankings: int) -> None:
    """The middleware around a bare ASGI app that answers at once (its own cost, not the app's)."""

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    class Observer:
        observe_answer = staticmethod(metrics.observe_answer)

    wrapped = RankingAnswers(answer, dataplane=_Dataplane(Observer()))
    scope = {"type": "http", "method": "POST", "path": "/v1/models/kfloop-ranker:predict", "headers": []}

    async def send(message: Any) -> None:
        pass

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def run(app: Any) -> float:
        started = time.thread_time()
        for _ in range(rankings):
            await app(scope, receive, send)
        return (time.thread_time() - started) / rankings * 1e6

    bare, through = asyncio.run(run(answer)), asyncio.run(run(wrapped))
    print(f"RankingAnswers middleware (with observe_answer):   {through - bare:6.1f} us CPU a request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rankings", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as workdir:
        metrics = predictor_metrics(Path(workdir), rng)
        metrics.start(columns())
        try:
            bench_request_path(metrics, args.rankings, rng)
            bench_drift_update(metrics)
            bench_middleware(metrics, args.rankings)
        finally:
            metrics.stop()


if __name__ == "__main__":
    main()
