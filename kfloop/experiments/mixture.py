"""Robbins' one-sided normal mixture: the boundary that makes the sequential test safe to look at any time.

For a process S (a sum of centred, roughly Gaussian increments) with accumulated variance V, every
exp(lambda S - lambda^2 V / 2) is a (super)martingale under "the mean is at most 0". Mixing lambda >= 0 over a
half-normal of precision rho gives, in closed form (Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), section 3, the one-sided normal
mixture; Robbins 1970 for the two-sided one):

    M(S, V) = 2 sqrt(rho / (V + rho)) exp(S^2 / (2 (V + rho))) Phi(S / sqrt(V + rho))

By Ville's inequality P(M >= 1/alpha at any time) <= alpha, so a test that rejects the first time
M >= 1/alpha keeps its error rate however often it is checked. M increases with S, so the rejection region at
variance V is S >= u(V), where u solves M(u, V) = 1/alpha (no closed form: found by bisection).

rho sets where the boundary is tightest: Howard et al. pick rho = V_opt / (2 log(1/(2 alpha)) + log(1 + 2
log(1/(2 alpha)))) for the variance V_opt at which a decision is hoped for; in effect units, 1/rho is the
variance of the prior over the effect (Johari et al.'s mSPRT tau^2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr

_LOG_2 = math.log(2.0)


def log_mixture(s: np.ndarray | float, v: np.ndarray | float, rho: float) -> np.ndarray:
    """log M(S, V): the log of the one-sided normal mixture martingale (elementwise; V >= 0, rho > 0)."""
    s = np.asarray(s, dtype=np.float64)
    scale = np.asarray(v, dtype=np.float64) + rho
    return _LOG_2 + 0.5 * np.log(rho / scale) + s * s / (2 * scale) + log_ndtr(s / np.sqrt(scale))


def mixture_bound(v: float, alpha: float, rho: float) -> float:
    """u(V): the S at which log M(S, V) reaches log(1/alpha); S >= u(V) rejects."""
    if not (v >= 0 and 0 < alpha < 1 and rho > 0):
        raise ValueError(f"mixture_bound needs v >= 0, 0 < alpha < 1, rho > 0; got v={v}, alpha={alpha}, rho={rho}")
    if math.isinf(v):
        return math.inf
    threshold = math.log(1 / alpha)
    scale = v + rho
    # log M(0, V) < 0 < threshold, and at this S the exponential term alone reaches the threshold while
    # log(2 Phi) >= 0, so the root lies between them.
    high = math.sqrt(scale * (2 * threshold + math.log(scale / rho)))
    return float(brentq(lambda s: float(log_mixture(s, v, rho)) - threshold, 0.0, high, xtol=1e-12, rtol=1e-14))
