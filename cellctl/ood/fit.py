"""Fitting the guard: pooled features of the training distribution -> mean, whitening, threshold.

The score of a view is the Mahalanobis distance sqrt((x - mu)^T S^-1 (x - mu)) of its pooled
features x (the last feature map averaged over its positions, as the model's own head sees
it) from the mean mu of the fit views. S is a shrinkage covariance,
(1 - alpha) * sample covariance + alpha * tr(sample covariance) / d * I: with d = 512
features and a few thousand views the sample covariance alone is noisy in its small
eigenvalues, and singular when channels never fire (alpha: DEFAULT_SHRINKAGE). The graph
computes the distance as the norm of (x - mu) W with W = S^-1/2.

The fit and held-out views are what ``cellctl guard`` is given: views of good and defective
parts, the model's training distribution (cellctl.ood says why not good ones alone).

The threshold is set on other views (held out, never fitted on): the smallest score
that no more than a fraction ``far`` of them exceed. That fraction is the documented
false-alarm rate per view; how many of the held-out views score above it is recorded too,
with the upper confidence bound such a count allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# alpha: every direction keeps at least 5 % of the mean variance. The directions in which the
# fit views hardly vary are the ones a few thousand views estimate worst; with alpha -> 0 the
# guard bets on them. Measured on the committed INT8 student (2400 fit views, 2400 held out):
# Ledoit-Wolf's estimate (0.001) left dark and dim frames at 1.1-1.4x the threshold, 0.05 at
# 1.6-2.2x, with no more false alarms on independent good views (0 of 846 either way).
DEFAULT_SHRINKAGE = 0.05
# eigenvalues of S below this fraction of its mean eigenvalue are raised to it: with
# alpha = 0 a dead channel would otherwise get an infinite weight
EIGEN_FLOOR = 1e-6


@dataclass(frozen=True)
class Whitening:
    mean: np.ndarray  # (d,) float64, mean pooled features of the fit views
    matrix: np.ndarray  # (d, d) float64, W = S^-1/2 (symmetric)
    shrinkage: float  # alpha
    views: int  # fit views


@dataclass(frozen=True)
class Threshold:
    value: float  # a score above it is out of distribution
    false_alarm_rate: float  # the target, per view
    views: int  # held-out views
    false_alarms: int  # held-out views scoring above ``value``


def pooled(features: np.ndarray) -> np.ndarray:
    """N x C x H x W feature maps -> N x C, each channel averaged over its positions (float64)."""
    if features.ndim != 4:
        raise ValueError(f"expected features of shape N x C x H x W, got {features.shape}")
    return np.asarray(np.asarray(features, dtype=np.float64).mean(axis=(2, 3)))


def fit_whitening(x: np.ndarray, shrinkage: float = DEFAULT_SHRINKAGE) -> Whitening:
    """Mean and W = S^-1/2 of pooled features ``x`` (N x d), S shrunk by ``shrinkage``."""
    n, d = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 views to fit the guard, got {n}")
    alpha = float(shrinkage)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {alpha}")
    mean = x.mean(axis=0)
    c = x - mean
    cov = c.T @ c / n
    mu = float(np.trace(cov)) / d
    if not mu > 0.0:
        raise ValueError("the fit views' features do not vary: every view gives the same features")
    s = (1.0 - alpha) * cov + alpha * mu * np.eye(d)
    vals, vecs = np.linalg.eigh(s)
    vals = np.maximum(vals, EIGEN_FLOOR * mu)
    w = (vecs * vals**-0.5) @ vecs.T
    return Whitening(mean, (w + w.T) / 2.0, alpha, n)


def distances(x: np.ndarray, whitening: Whitening) -> np.ndarray:
    """Mahalanobis distance of each row of ``x`` (N x d) under ``whitening`` (float64)."""
    z = (np.asarray(x, dtype=np.float64) - whitening.mean) @ whitening.matrix
    return np.asarray(np.sqrt(np.sum(z * z, axis=1)))


def threshold_at(scores: np.ndarray, far: float) -> Threshold:
    """The smallest held-out score that at most floor(far * N) of the N ``scores`` exceed."""
    if not 0.0 < far < 1.0:
        raise ValueError(f"the false-alarm rate must be in (0, 1), got {far}")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0 or not np.isfinite(s).all():
        raise ValueError("held-out scores must be finite and at least one")
    allowed = math.floor(far * s.size)
    value = float(np.sort(s)[::-1][allowed])
    return Threshold(value, far, int(s.size), int(np.count_nonzero(s > value)))


def min_holdout_views(far: float) -> int:
    """Held-out views needed for a threshold at ``far`` to be set by data: with fewer, even
    one false alarm is more than the rate allows, and the threshold is simply the maximum."""
    return math.ceil(1.0 / far - 1e-9)


def far_upper_bound(false_alarms: int, views: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on the per-view false-alarm rate, given
    ``false_alarms`` of ``views`` held-out views above the threshold."""
    if views <= 0:
        return 1.0
    if false_alarms >= views:
        return 1.0

    def cdf(p: float) -> float:  # P(X <= false_alarms), X ~ Binomial(views, p)
        return sum(
            math.exp(
                math.lgamma(views + 1)
                - math.lgamma(k + 1)
                - math.lgamma(views - k + 1)
                + k * math.log(p)
                + (views - k) * math.log1p(-p)
            )
            for k in range(false_alarms + 1)
        )

    lo, hi = false_alarms / views, 1.0 - 1e-15
    for _ in range(100):  # bisection: cdf falls from >= 1 - confidence at lo to ~0 at hi
        mid = (lo + hi) / 2.0
        if cdf(mid) > 1.0 - confidence:
            lo = mid
        else:
            hi = mid
    return hi
