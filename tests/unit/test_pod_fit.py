"""The hit/miss POD fit (MIL-HDBK-1823A, log-logistic) and its figure, on synthetic data
drawn from a known curve with seeded generators."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellctl.pod import fit_pod
from cellctl.pod.fit import CHI2_1_090, _log_lik
from cellctl.pod.plot import PANEL_H, PANEL_W, Panel, write_png

# a known curve: a50 = e^2 = 7.39, a90 = exp((ln 9 + 4) / 2) = 22.2, tried over sizes 1..60
B0, B1 = -4.0, 2.0
LOGIT90 = math.log(9.0)
TRUE_A50 = math.exp(-B0 / B1)
TRUE_A90 = math.exp((LOGIT90 - B0) / B1)


def draw(seed: int, n: int, b0: float = B0, b1: float = B1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(math.log(1.0), math.log(60.0), n))
    hits = rng.random(n) < 1.0 / (1.0 + np.exp(-(b0 + b1 * np.log(sizes))))
    return sizes, hits


def test_recovers_known_parameters_within_their_standard_errors() -> None:
    fit = fit_pod(*draw(seed=11, n=500))
    assert fit.fitted and not fit.separated and fit.reason is None
    assert fit.n == 500 and 0 < fit.hits < 500
    assert fit.cov is not None and fit.b0 is not None and fit.b1 is not None
    se0, se1 = math.sqrt(fit.cov[0][0]), math.sqrt(fit.cov[1][1])
    assert abs(fit.b0 - B0) < 3 * se0, (fit.b0, se0)
    assert abs(fit.b1 - B1) < 3 * se1, (fit.b1, se1)
    assert fit.cov[0][1] == pytest.approx(fit.cov[1][0])
    cov = np.array(fit.cov)
    for p, true in ((0.5, TRUE_A50), (0.9, TRUE_A90)):
        estimate = fit.a50 if p == 0.5 else fit.a90
        assert estimate is not None
        # delta method on ln a_p = (logit p - b0) / b1
        grad = np.array([-1.0 / fit.b1, -(math.log(p / (1 - p)) - fit.b0) / fit.b1**2])
        se = math.sqrt(float(grad @ cov @ grad))
        assert abs(math.log(estimate) - math.log(true)) < 3 * se, (p, estimate, true, se)
    assert fit.a90_95 is not None and fit.a90 is not None and fit.a50 is not None
    assert fit.a50 < fit.a90 < fit.a90_95


def test_the_lower_bound_is_the_likelihood_ratio_region_minimum() -> None:
    """Checked against brute force: the least POD over a dense grid of (b0, b1) inside
    2 (ll_max - ll) <= chi2_1(0.90)."""
    sizes, hits = draw(seed=5, n=150)
    fit = fit_pod(sizes, hits)
    assert fit.b0 is not None and fit.b1 is not None and fit.cov is not None
    x, y = np.log(sizes), hits.astype(float)
    s0, s1 = 4 * math.sqrt(fit.cov[0][0]), 4 * math.sqrt(fit.cov[1][1])
    g0, g1 = np.meshgrid(np.linspace(fit.b0 - s0, fit.b0 + s0, 600), np.linspace(fit.b1 - s1, fit.b1 + s1, 600))
    b0, b1 = g0.ravel(), g1.ravel()
    ll = _log_lik(b0[None, :] + np.outer(x, b1), y)
    ll_max = float(_log_lik(fit.b0 + fit.b1 * x, y))
    inside = 2 * (ll_max - ll) <= CHI2_1_090
    assert inside.sum() > 1000
    for size in (3.0, 10.0, 30.0):
        brute = 1 / (1 + math.exp(-float(np.min(b0[inside] + b1[inside] * math.log(size)))))
        assert fit.pod_lower([size])[0] == pytest.approx(brute, rel=2e-2, abs=1e-4)
        assert fit.pod_lower([size])[0] < fit.pod([size])[0]
    brute_a90_95 = float(np.max(np.exp((LOGIT90 - b0[inside]) / b1[inside])))
    assert fit.a90_95 == pytest.approx(brute_a90_95, rel=1e-2)
    assert fit.pod_lower([fit.a90_95])[0] == pytest.approx(0.9, abs=1e-6)


def test_a90_95_is_conservative_over_repetitions() -> None:
    """The one-sided 95 % bound lies above the true a90 in about 95 % of experiments (>= 88 %
    of 50 here: the binomial spread of 50 trials at 0.95 is about 3 %)."""
    covered = 0
    for seed in range(50):
        fit = fit_pod(*draw(seed=1000 + seed, n=300))
        assert fit.a90 is not None and fit.a90_95 is not None, fit.why
        assert fit.a90_95 > fit.a90
        covered += fit.a90_95 > TRUE_A90
    assert covered >= 44, covered


@pytest.mark.parametrize(
    ("sizes", "hits", "reason"),
    [
        ([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], "all 4 trials were hits"),
        ([1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], "all 4 trials were misses"),
        ([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1], "every miss is at or below every hit"),
        ([1.0, 2.0, 3.0, 3.0], [0, 0, 1, 0], "every miss is at or below every hit"),  # quasi-complete
        ([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 0], "POD falls with size"),
    ],
)
def test_separated_data_is_flagged_without_a_curve(sizes: list[float], hits: list[int], reason: str) -> None:
    fit = fit_pod(sizes, hits)
    assert fit.separated and not fit.fitted
    assert fit.reason is not None and reason in fit.reason
    assert (fit.b0, fit.b1, fit.a50, fit.a90, fit.a90_95, fit.cov) == (None,) * 6
    assert set(fit.why) == {"a50", "a90", "a90_95"}
    with pytest.raises(ValueError, match="no POD curve"):
        fit.pod([1.0])


def test_degenerate_data_is_reported_not_raised() -> None:
    empty = fit_pod([], [])
    assert not empty.separated and empty.reason == "no trials" and empty.size_range is None
    one_size = fit_pod([2.0] * 6, [1, 0, 1, 0, 1, 1])
    assert not one_size.separated and one_size.reason is not None and "one size" in one_size.reason
    with pytest.raises(ValueError, match="> 0"):
        fit_pod([0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match="2 sizes for 3"):
        fit_pod([1.0, 2.0], [0, 1, 1])


def test_29_of_29_demonstration_is_the_fallback_for_all_hits() -> None:
    sizes = np.linspace(1.0, 3.0, 40)
    fit = fit_pod(sizes, [0] * 5 + [1] * 35)  # separated: misses below hits
    assert fit.separated
    demo = fit.demonstration
    assert demo is not None and demo.trials == 35 and demo.size == pytest.approx(sizes[5])
    assert demo.pod_lower == pytest.approx(0.05 ** (1 / 35)) and demo.pod_lower > 0.9
    # 28 hits are not enough for a 90 % lower bound at 95 % confidence
    assert fit_pod(sizes[:28], [1] * 28).demonstration is None
    assert fit_pod(sizes[:29], [1] * 29).demonstration is not None


def test_a90_95_beyond_the_tested_sizes_is_none_with_the_reason() -> None:
    # a shallow curve over a narrow range: a90 is far above the largest size tried
    sizes, hits = draw(seed=3, n=120, b0=-1.0, b1=0.6)
    sizes_clipped = np.minimum(sizes, 8.0)
    fit = fit_pod(sizes_clipped, hits)
    assert fit.fitted and fit.a90_95 is None
    assert "beyond the largest size tested" in fit.why["a90_95"]
    assert fit.as_dict()["a90_95"] is None and fit.as_dict()["why"]["a90_95"]


def test_as_dict_is_json_ready() -> None:
    import json

    fit = fit_pod(*draw(seed=2, n=200))
    data = json.loads(json.dumps(fit.as_dict()))
    assert {"n", "hits", "b0", "b1", "cov", "a50", "a90", "a90_95", "why", "bound", "separated"} <= set(data)
    assert "likelihood ratio" in data["bound"]


def test_plot_writes_a_png_of_the_expected_size(tmp_path: Path) -> None:
    fitted = fit_pod(*draw(seed=7, n=120))
    separated = fit_pod(sorted([1.0, 2.0, 3.0] * 10), [0] * 10 + [1] * 20)  # misses at 1 only
    rechecks = tuple(not hit and i % 2 == 0 for i, hit in enumerate(separated.outcomes))
    panels = [
        Panel(fitted, "head: contrast sweep", "contrast (grey levels)"),
        Panel(separated, "head: length sweep", "length (mm)", rechecks=rechecks),
        Panel(fit_pod([], []), "shank: contrast sweep", "contrast (grey levels)"),
    ]
    path = tmp_path / "pod.png"
    assert write_png(path, panels, cols=2) == (2 * PANEL_W, 2 * PANEL_H)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(path))
    assert img is not None and img.shape == (2 * PANEL_H, 2 * PANEL_W, 3)
    # the curve (blue, BGR 180,90,20) and the bound (red) are drawn in the first panel only
    first = img[:PANEL_H, :PANEL_W].astype(int)
    blue = (np.abs(first - [180, 90, 20]).sum(axis=2) < 30).sum()
    red = (np.abs(first - [40, 40, 210]).sum(axis=2) < 30).sum()
    assert blue > 300 and red > 200
    second = img[:PANEL_H, PANEL_W:].astype(int)
    assert (np.abs(second - [180, 90, 20]).sum(axis=2) < 30).sum() == 0
    # the RECHECK misses are drawn apart (orange, BGR 0,140,255), the plain misses grey
    assert (np.abs(second - [0, 140, 255]).sum(axis=2) < 40).sum() > 8
    assert (np.abs(first - [0, 140, 255]).sum(axis=2) < 40).sum() == 0
    # the empty last cell of the grid stays white
    assert (img[PANEL_H + 5 :, PANEL_W + 5 :] == 255).all()
