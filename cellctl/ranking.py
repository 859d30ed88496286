"""How well the scores order items, apart from the threshold that turns them into decisions.

Escapes and false rejects are figures at one threshold; an integrator tuning
``decision.threshold`` or a quality engineer comparing two students needs the trade-off
itself: how often a defective item outscores a good one (AUC), and what a threshold low
enough to let no defective item pass would cost in good items rejected.

An item's score is its highest score among the views the guard trusted: the one that can
REJECT it (``cellctl.decision``). An item with no trusted score (unreadable, not located,
every view out of distribution) is counted apart: no threshold moves it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Any

from cellctl.decision import ViewResult


def item_score(views: Sequence[ViewResult]) -> float | None:
    """The highest trusted score of an item's views; None when no view has one."""
    return max((v.score for v in views if v.trusted and v.score is not None), default=None)


def auc(good: Sequence[float], defective: Sequence[float]) -> float | None:
    """P(a defective item scores above a good one), ties counted half (Mann-Whitney U)."""
    if not good or not defective:
        return None
    ordered = sorted(good)
    wins = sum(bisect.bisect_left(ordered, d) + bisect.bisect_right(ordered, d) for d in defective) / 2
    return wins / (len(good) * len(defective))


def ranking(items: Iterable[tuple[str, float | None]]) -> dict[str, Any]:
    """Figures of (truth, score) pairs: AUC, and the highest threshold that lets no scored
    defective item pass with the good items it would reject (at or above it, as decide does)."""
    good: list[float] = []
    defective: list[float] = []
    unscored = 0
    for truth, score in items:
        if score is None:
            unscored += 1
        else:
            (defective if truth == "defect" else good).append(score)
    lowest = min(defective, default=None)
    return {
        "scored_good": len(good),
        "scored_defective": len(defective),
        "unscored": unscored,
        "auc": None if (a := auc(good, defective)) is None else round(a, 4),
        "zero_escape_threshold": None if lowest is None else round(lowest, 6),
        "false_rejects_at_zero_escapes": None if lowest is None else sum(s >= lowest for s in good),
    }
