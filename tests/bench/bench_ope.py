"""Speed of the OPE building blocks (a plain script, not collected by pytest).

.venvs/serving/bin/python tests/bench/bench_ope.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from kfloop.ope import EpsilonGreedy, Softmax, dr, estimate_difference, ips, snips


def timed(label: str, call: Callable[[], object], repeat: int = 3) -> None:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    print(f"{label:<62} {best * 1000:8.1f} ms")


def main() -> None:
    rng = np.random.default_rng(0)
    n_rows, n_items, k = 20_000, 80, 3
    reward = (rng.random(n_rows) < 0.05).astype(float)
    pscore = rng.uniform(0.01, 0.5, n_rows)
    target = rng.uniform(0.0, 0.5, n_rows)
    q_hat, q_target = rng.uniform(0, 0.1, n_rows), rng.uniform(0, 0.1, n_rows)
    slate = np.repeat(np.arange(n_rows // k + 1), k)[:n_rows]
    timed("ips, 20,000 rows, 1000 resamples", lambda: ips(reward, pscore, target))
    timed("snips, 20,000 rows, 1000 resamples", lambda: snips(reward, pscore, target))
    timed("dr, 20,000 rows, 1000 resamples", lambda: dr(reward, pscore, target, q_hat, q_target))
    timed("ips by slate (6,667 slates), 1000 resamples", lambda: ips(reward, pscore, target, slate_id=slate))
    timed(
        "estimate_difference (dr, paired), 20,000 rows, 1000 resamples",
        lambda: estimate_difference(
            reward, pscore, target, pscore, q_hat=q_hat, q_hat_target=q_target, q_hat_reference=q_target
        ),
    )
    scores = rng.normal(size=(n_rows, n_items))
    timed(
        "epsilon-greedy propensities, 20,000 contexts x 80 items, k=3",
        lambda: EpsilonGreedy(0.1).position_propensities(scores, k),
    )
    timed(
        "softmax propensities, 20,000 contexts x 80 items, k=3",
        lambda: Softmax(1.0).position_propensities(scores, k),
        1,
    )
    one = scores[0]
    timed(
        "softmax propensities, 1 context (serving), x1000",
        lambda: [Softmax(1.0).position_propensities(one, k) for _ in range(1000)],
        1,
    )
    timed(
        "epsilon-greedy propensities, 1 context (serving), x1000",
        lambda: [EpsilonGreedy(0.1).position_propensities(one, k) for _ in range(1000)],
        1,
    )
    timed(
        "softmax sample_slate, 1 context (serving), x1000",
        lambda: [Softmax(1.0).sample_slate(one, k, rng) for _ in range(1000)],
        1,
    )


if __name__ == "__main__":
    main()
