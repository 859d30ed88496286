"""Part verdict from per-view scores: PASS only when everything was inspected and clean.

The one place that turns evidence into PASS / REJECT / RECHECK; the daemon and ``cellctl
eval`` both decide here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cellctl.fault import Fault
from cellctl.outcome import Outcome


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    max_score: float | None
    worst_view: str | None


def decide(
    view_names: Sequence[str], scores: Sequence[float] | None, threshold: float, fault: Fault | None
) -> Decision:
    """REJECT if any finite score reaches the threshold (a defect seen is a defect, whatever
    else failed); otherwise RECHECK on a fault, a missing or non-finite score; else PASS."""
    if scores is None:
        return Decision(Outcome.RECHECK, fault.reason if fault else "no scores", None, None)
    finite = [(s, v) for s, v in zip(scores, view_names, strict=False) if math.isfinite(s)]
    worst = max(finite, default=None)
    max_score, worst_view = (worst[0], worst[1]) if worst else (None, None)
    if worst is not None and worst[0] >= threshold:
        return Decision(Outcome.REJECT, f"defect in {worst[1]} (p={worst[0]:.3f})", max_score, worst_view)
    if fault is not None:
        return Decision(Outcome.RECHECK, fault.reason, max_score, worst_view)
    if len(scores) != len(view_names) or not view_names:
        return Decision(Outcome.RECHECK, f"{len(scores)} scores for {len(view_names)} views", max_score, worst_view)
    bad = [v for s, v in zip(scores, view_names, strict=True) if not math.isfinite(s)]
    if bad:
        return Decision(Outcome.RECHECK, f"non-finite score in {', '.join(bad)}", max_score, worst_view)
    return Decision(Outcome.PASS, "all views clean", max_score, worst_view)
