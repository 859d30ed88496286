"""Hit/miss probability of detection (POD) by maximum likelihood, per MIL-HDBK-1823A.

The model is the log-logistic (logit of log size) link,

    POD(a) = 1 / (1 + exp(-(b0 + b1 ln a))),

fitted to hit/miss outcomes on flaws of known size ``a`` by Newton-Raphson on the Bernoulli
log-likelihood (numpy only: the fit has two parameters, so no solver library is needed).

Confidence bound: **likelihood ratio** (the bound MIL-HDBK-1823A prefers over Wald). The lower
one-sided 95 % bound of POD at size ``a`` is the least POD(a) over the parameter region
``2 (ll_max - ll(b0, b1)) <= chi2_1(0.90) = 2.705543``. Minimising a linear function of the
parameters (the logit ``b0 + b1 ln a``) over that region is the profile-likelihood interval of
the logit at ``a``, so the 1-degree-of-freedom quantile is the right one. The region is convex
(the log-likelihood is concave); its boundary is traced by casting rays from the maximum in
``RAYS`` directions (spread evenly in the metric of the Wald covariance, so the inscribed
polygon hugs the region) and solving the deviance along each ray by Newton's method, which
converges monotonically from outside for a convex function. The bound at any size is then the
least logit over the polygon's vertices. ``a90/95`` is the smallest size at which that bound
reaches 0.9, i.e. the largest ``a90`` of any curve in the region.

No curve exists when the data are separated (all hits, all misses, or every miss smaller
than every hit: the likelihood grows without bound as the slope does). That is reported as
``separated`` with the reason, and the fallback MIL-HDBK-1823A names is given instead: the
29-of-29 demonstration (n hits in n trials bound POD below by 0.05 ** (1 / n), which is 0.9 at
n = 29), counted over all trials at or above a size, which assumes POD does not fall with size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# one-sided 95 % bound: the 90 % quantile of chi-square with 1 degree of freedom
CHI2_1_090 = 2.705543
RAYS = 720
DEMO_TRIALS = 29  # 0.9 ** 29 = 0.047 < 0.05
BOUND = "likelihood ratio, one-sided 95 % (2 (ll_max - ll) <= chi2_1(0.90) = 2.7055)"

_MAX_ITER = 100
_RAY_T_MAX = 1e4  # in Wald standard errors: a region this wide is reported as unbounded

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Demonstration:
    """The 29-of-29 fallback: every trial at or above ``size`` was a hit, ``trials`` of them."""

    size: float
    trials: int
    pod_lower: float  # 0.05 ** (1 / trials): the one-sided 95 % lower bound of POD at >= size

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "hits": self.trials, "trials": self.trials, "pod_lower": self.pod_lower}


@dataclass(frozen=True)
class PodFit:
    n: int
    hits: int
    size_range: tuple[float, float] | None  # smallest and largest size tried (None: no trials)
    separated: bool
    reason: str | None  # why there is no curve (separated or degenerate data); None: fitted
    b0: float | None
    b1: float | None
    cov: tuple[tuple[float, float], tuple[float, float]] | None  # of (b0, b1): inverse information
    a50: float | None
    a90: float | None
    a90_95: float | None
    why: dict[str, str]  # for each of a50, a90, a90_95 that is None: why
    demonstration: Demonstration | None
    sizes: Array = field(repr=False, compare=False)
    outcomes: Array = field(repr=False, compare=False)  # 1.0 hit, 0.0 miss
    # vertices (K x 2) of the likelihood-ratio region's boundary, in (b0, b1); empty: no curve
    region: Array = field(repr=False, compare=False)
    region_unbounded: bool = False

    @property
    def fitted(self) -> bool:
        return self.b0 is not None and self.b1 is not None

    def pod(self, sizes: ArrayLike) -> Array:
        """The fitted POD at these sizes (ValueError when there is no curve)."""
        if self.b0 is None or self.b1 is None:
            raise ValueError(f"no POD curve: {self.reason}")
        return _sigmoid(self.b0 + self.b1 * np.log(np.asarray(sizes, dtype=np.float64)))

    def pod_lower(self, sizes: ArrayLike) -> Array:
        """The one-sided 95 % likelihood-ratio lower bound of POD at these sizes."""
        if not self.fitted or not len(self.region):
            raise ValueError(f"no POD curve: {self.reason}")
        x = np.log(np.asarray(sizes, dtype=np.float64))
        logits = self.region[:, :1] + self.region[:, 1:] * x.reshape(1, -1)
        return _sigmoid(logits.min(axis=0)).reshape(x.shape)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the figures, not the data."""
        return {
            "n": self.n,
            "hits": self.hits,
            "size_range": list(self.size_range) if self.size_range else None,
            "separated": self.separated,
            "reason": self.reason,
            "b0": self.b0,
            "b1": self.b1,
            "cov": [list(row) for row in self.cov] if self.cov else None,
            "a50": self.a50,
            "a90": self.a90,
            "a90_95": self.a90_95,
            "why": dict(self.why),
            "bound": BOUND,
            "demonstration": self.demonstration.as_dict() if self.demonstration else None,
        }


def fit_pod(sizes: Sequence[float] | ArrayLike, hits: Sequence[bool] | ArrayLike) -> PodFit:
    """Fit hit/miss outcomes (``hits[i]`` for a flaw of size ``sizes[i]`` > 0).

    Never raises for awkward data: no trials, one size only, separation and a falling curve
    are all reported in the result. ValueError only for malformed input (lengths differ, a
    size <= 0 or not finite).
    """
    a = np.asarray(sizes, dtype=np.float64).reshape(-1)
    y = np.asarray(hits, dtype=np.float64).reshape(-1)
    if a.shape != y.shape:
        raise ValueError(f"{a.size} sizes for {y.size} outcomes")
    if a.size and not (np.all(np.isfinite(a)) and np.all(a > 0)):
        raise ValueError("sizes must be finite and > 0 (the model is in ln a)")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("outcomes must be hit (1/True) or miss (0/False)")
    n, k = int(a.size), int(y.sum())
    base: dict[str, Any] = {
        "n": n,
        "hits": k,
        "size_range": (float(a.min()), float(a.max())) if n else None,
        "demonstration": _demonstration(a, y),
        "sizes": a,
        "outcomes": y,
    }
    problem = _no_curve(np.log(a), y)
    if problem is not None:
        separated, reason = problem
        return _without_curve(base, separated, reason)

    x = np.log(a)
    # standardised ln a keeps the Newton steps well conditioned at any unit
    centre, scale = float(x.mean()), float(x.std())
    z = np.column_stack([np.ones(n), (x - centre) / scale])
    theta, converged = _newton(z, y)
    if not converged:  # a backstop: _no_curve catches separation exactly
        return _without_curve(base, True, "the slope grows without bound (quasi-separated data)")
    info = _information(z, theta)
    # (c0, c1) on z -> (b0, b1) on ln a: b1 = c1 / s, b0 = c0 - c1 m / s
    to_b = np.array([[1.0, -centre / scale], [0.0, 1.0 / scale]])
    b0, b1 = (float(v) for v in to_b @ theta)
    cov_z: Array = np.linalg.inv(info).astype(np.float64)
    cov = to_b @ cov_z @ to_b.T
    region_z, unbounded = _lr_region(z, y, theta, cov_z)
    region = region_z @ to_b.T

    why: dict[str, str] = {}
    lo, hi = base["size_range"]
    a50 = _within(_size_at(b0, b1, 0.5), "a50", lo, hi, why, b1)
    a90 = _within(_size_at(b0, b1, 0.9), "a90", lo, hi, why, b1)
    a90_95 = _a90_95(region, unbounded, lo, hi, why)
    return PodFit(
        separated=False,
        reason=None,
        b0=b0,
        b1=b1,
        cov=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        a50=a50,
        a90=a90,
        a90_95=a90_95,
        why=why,
        region=region,
        region_unbounded=unbounded,
        **base,
    )


def _sigmoid(t: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * t))  # = 1 / (1 + exp(-t)), without overflow
    return out


def _log_lik(eta: Array, y: Array) -> Array:
    """Bernoulli log-likelihood summed over axis 0; ``eta`` is n or n x K."""
    # y eta - log(1 + e^eta), with log1p(e^-|eta|) + max(eta, 0) for log(1 + e^eta)
    y2 = y.reshape(-1, *([1] * (eta.ndim - 1)))
    total: Array = np.sum(y2 * eta - (np.logaddexp(0.0, eta)), axis=0)
    return total


def _no_curve(x: Array, y: Array) -> tuple[bool, str] | None:
    """(separated, reason) when the maximum-likelihood curve does not exist, else None."""
    n, k = x.size, int(y.sum())
    if n == 0:
        return False, "no trials"
    if k == n:
        return True, f"all {n} trial{_s(n)} were hits"
    if k == 0:
        return True, f"all {n} trial{_s(n)} were misses"
    if np.unique(x).size < 2:
        return False, "all trials at one size: a curve needs at least two"
    hit_x, miss_x = x[y == 1], x[y == 0]
    if miss_x.max() <= hit_x.min():
        size = math.exp(float(hit_x.min()))
        return True, f"every miss is at or below every hit (separation at {size:.4g})"
    if hit_x.max() <= miss_x.min():
        return True, "every hit is at or below every miss (POD falls with size)"
    return None


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _without_curve(base: dict[str, Any], separated: bool, reason: str) -> PodFit:
    why = {name: f"no POD curve: {reason}" for name in ("a50", "a90", "a90_95")}
    return PodFit(
        separated=separated,
        reason=reason,
        b0=None,
        b1=None,
        cov=None,
        a50=None,
        a90=None,
        a90_95=None,
        why=why,
        region=np.empty((0, 2)),
        **base,
    )


def _information(z: Array, theta: Array) -> Array:
    p = _sigmoid(z @ theta)
    w = p * (1.0 - p)
    info: Array = (z * w[:, None]).T @ z
    return info


def _newton(z: Array, y: Array) -> tuple[Array, bool]:
    """Maximum-likelihood (c0, c1) on standardised z by Newton-Raphson with step halving."""
    p0 = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    theta = np.array([math.log(p0 / (1 - p0)), 0.0])
    ll = float(_log_lik(z @ theta, y))
    for _ in range(_MAX_ITER):
        p = _sigmoid(z @ theta)
        grad = z.T @ (y - p)
        info = _information(z, theta)
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            return theta, False
        # halve until the likelihood does not fall: Newton can overshoot far from the maximum
        for _ in range(40):
            candidate = theta + step
            ll_new = float(_log_lik(z @ candidate, y))
            if ll_new >= ll - 1e-12:
                break
            step = step / 2.0
        else:
            return theta, False
        theta, ll = candidate, ll_new
        if abs(theta[1]) > 50.0:  # POD from 0.01 to 0.99 within 0.2 standard deviations of ln a
            return theta, False
        if float(np.max(np.abs(step))) < 1e-10:
            return theta, True
    return theta, False


def _lr_region(z: Array, y: Array, theta: Array, cov: Array) -> tuple[Array, bool]:
    """Vertices (K x 2) of ``2 (ll_max - ll) = CHI2_1_090`` around the maximum ``theta``, and
    whether the region is unbounded in some direction (those vertices sit at _RAY_T_MAX)."""
    ll_max = float(_log_lik(z @ theta, y))
    chol = np.linalg.cholesky(cov)
    phi = np.linspace(0.0, 2.0 * math.pi, RAYS, endpoint=False)
    dirs = chol @ np.vstack([np.cos(phi), np.sin(phi)])  # 2 x K: unit Wald ellipse directions
    zu = z @ dirs  # n x K: d eta / dt along each ray
    eta0 = (z @ theta)[:, None]

    def deviance(t: Array) -> Array:
        dev: Array = 2.0 * (ll_max - _log_lik(eta0 + zu * t[None, :], y))
        return dev

    # bracket from outside: the quadratic approximation puts the boundary at t = 1.645
    t = np.full(RAYS, 2.0)
    while True:
        short = deviance(t) < CHI2_1_090
        if not short.any() or t.max() >= _RAY_T_MAX:
            break
        t = np.where(short, np.minimum(t * 2.0, _RAY_T_MAX), t)
    unbounded = deviance(t) < CHI2_1_090
    # Newton on the convex, increasing deviance along each ray: monotone from the outside
    for _ in range(60):
        eta = eta0 + zu * t[None, :]
        dev = 2.0 * (ll_max - _log_lik(eta, y))
        slope = -2.0 * np.sum((y[:, None] - _sigmoid(eta)) * zu, axis=0)
        excess = np.where(unbounded, 0.0, dev - CHI2_1_090)
        if float(np.max(np.abs(excess))) < 1e-9:
            break
        t = np.where(unbounded, t, t - excess / np.maximum(slope, 1e-300))
    return (theta[:, None] + dirs * t[None, :]).T, bool(unbounded.any())


def _size_at(b0: float, b1: float, pod: float) -> float | None:
    if b1 <= 0:
        return None
    return math.exp((math.log(pod / (1 - pod)) - b0) / b1)


def _within(value: float | None, name: str, lo: float, hi: float, why: dict[str, str], b1: float) -> float | None:
    """``value`` when inside the tested sizes; otherwise None and the reason in ``why``."""
    if value is None:
        why[name] = f"POD does not rise with size (b1 = {b1:.4g})"
        return None
    if value > hi:
        why[name] = f"beyond the largest size tested, {hi:.4g} (extrapolated {value:.4g})"
        return None
    if value < lo:
        why[name] = f"below the smallest size tested, {lo:.4g} (extrapolated {value:.4g})"
        return None
    return value


def _a90_95(region: Array, unbounded: bool, lo: float, hi: float, why: dict[str, str]) -> float | None:
    """The smallest size where the lower bound reaches 0.9: the least logit over the region,
    a concave function of ln a, is >= logit(0.9) on one interval of ln a; its left end."""
    target = math.log(9.0)
    b0, b1 = region[:, 0], region[:, 1]
    rising, falling, flat = b1 > 0, b1 < 0, b1 == 0
    if np.any(flat & (b0 < target)):
        why["a90_95"] = "the confidence region holds a flat POD curve below 0.9"
        return None
    left = float(np.max((target - b0[rising]) / b1[rising])) if rising.any() else -math.inf
    right = float(np.min((target - b0[falling]) / b1[falling])) if falling.any() else math.inf
    if left > right or not math.isfinite(left):
        why["a90_95"] = "the 95 % lower bound never reaches 0.9 (too few trials, or too flat a curve)"
        return None
    value = math.exp(left)
    where = "" if not unbounded else " (the confidence region is unbounded in some direction)"
    if value > hi:
        why["a90_95"] = f"beyond the largest size tested, {hi:.4g} (extrapolated {value:.4g}){where}"
        return None
    if value < lo:
        why["a90_95"] = f"below the smallest size tested, {lo:.4g} (extrapolated {value:.4g}){where}"
        return None
    if right < math.log(hi):
        why["a90_95_note"] = f"the lower bound falls below 0.9 again above {math.exp(right):.4g}"
    return value


def _demonstration(a: Array, y: Array) -> Demonstration | None:
    """The smallest size from which all of at least 29 trials were hits, if any."""
    if not a.size:
        return None
    order = np.argsort(-a, kind="stable")  # largest first
    a_sorted, y_sorted = a[order], y[order]
    misses = np.flatnonzero(y_sorted == 0)
    # trials above the largest miss (ties with it excluded: not all hits at that size)
    stop = a_sorted.size if not misses.size else int(np.searchsorted(-a_sorted, -a_sorted[misses[0]], side="left"))
    if stop < DEMO_TRIALS:
        return None
    return Demonstration(size=float(a_sorted[stop - 1]), trials=stop, pod_lower=0.05 ** (1.0 / stop))


def binomial_upper(k: int, n: int, confidence: float = 0.95) -> float | None:
    """The exact (Clopper-Pearson) one-sided upper confidence bound of a rate seen ``k`` times
    in ``n`` trials, e.g. of the false-call rate: the p at which P(X <= k) = 1 - confidence.
    None for n = 0."""
    if n <= 0:
        return None
    if k >= n:
        return 1.0
    alpha = 1.0 - confidence

    def cdf(p: float) -> float:  # P(X <= k) for X ~ Bin(n, p), in log space: n may be large
        log_choose = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
        log_terms = [c + i * math.log(p) + (n - i) * math.log1p(-p) for i, c in enumerate(log_choose)]
        top = max(log_terms)
        return math.exp(top) * sum(math.exp(t - top) for t in log_terms)

    lo, hi = 0.0, 1.0  # cdf falls from 1 to 0 as p rises
    for _ in range(100):
        mid = (lo + hi) / 2
        if mid <= 0.0 or cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi
