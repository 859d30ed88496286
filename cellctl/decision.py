"""Part verdict from the evidence of its views: PASS only when everything was seen and clean.

The one place that turns evidence into PASS / REJECT / RECHECK; the daemon, ``cellctl eval``
and ``cellctl pod`` all decide here (through ``cellctl.inspection``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cellctl.fault import Fault
from cellctl.outcome import Outcome

MAX_REASONS = 3  # problems named in a reason; the rest are counted


@dataclass(frozen=True)
class ViewResult:
    """One model input of a part and what became of it."""

    name: str  # "head@90", "head@90#1", "shank[r0,c1]"
    kind: str  # "head" | "shank"
    score: float | None  # defect probability; None if the model never ran on it
    ood: float | None  # out-of-distribution distance; None if not measured
    problem: str | None  # why the view cannot be trusted (guard); None: it can

    @property
    def trusted(self) -> bool:
        return self.problem is None and self.score is not None and math.isfinite(self.score)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    max_score: float | None
    worst_view: str | None


def decide(
    views: Sequence[ViewResult],
    threshold: float,
    fault: Fault | None = None,
    problems: Sequence[str] = (),
    recheck_threshold: float | None = None,
) -> Decision:
    """REJECT if a trusted view scores at or above the threshold (a defect seen is a defect,
    whatever else failed); else RECHECK on a fault, a part-level problem (not located, not
    covered), a view the guard does not trust, a missing score, or a trusted view in the grey
    zone (at or above ``recheck_threshold``: the model is not sure either way); else PASS.

    A view the guard does not trust (invariants broken, out of the model's distribution)
    decides nothing either way: a glare spot the model calls a crack is no defect seen, so
    the part goes to a person (RECHECK), not to the reject bin. The guard is fitted on good and
    defective training views alike, so an indication is not out of distribution by itself.
    """
    grey = threshold if recheck_threshold is None else recheck_threshold
    finite = [(v.score, v.name) for v in views if v.score is not None and math.isfinite(v.score)]
    worst = max(finite, default=None)
    max_score, worst_view = (worst[0], worst[1]) if worst else (None, None)
    defects = [(v.score, v.name) for v in views if v.trusted and v.score is not None and v.score >= threshold]
    if defects:
        score, name = max(defects)
        return Decision(Outcome.REJECT, f"defect in {name} (p={score:.3f})", max_score, worst_view)
    if fault is not None:
        return Decision(Outcome.RECHECK, fault.reason, max_score, worst_view)
    untrusted = [
        f"{v.name}: {v.problem or ('no score' if v.score is None else 'non-finite score')}"
        for v in views
        if not v.trusted
    ]
    unsure = sorted(
        ((v.score, v.name) for v in views if v.trusted and v.score is not None and v.score >= grey), reverse=True
    )
    uncertain = [f"{name}: p={score:.3f}, not clear of {grey:g}" for score, name in unsure]
    reasons = [*problems, *untrusted, *uncertain]
    if reasons:
        more = f" (and {len(reasons) - MAX_REASONS} more)" if len(reasons) > MAX_REASONS else ""
        return Decision(Outcome.RECHECK, "; ".join(reasons[:MAX_REASONS]) + more, max_score, worst_view)
    if not views:
        return Decision(Outcome.RECHECK, "no views", None, None)
    return Decision(Outcome.PASS, f"all {len(views)} views clean", max_score, worst_view)


SEVERITY = {Outcome.PASS: 0, Outcome.RECHECK: 1, Outcome.REJECT: 2}


def combine(decisions: Sequence[Decision]) -> Decision:
    """One part's decision from decisions taken on its views separately (images judged one by
    one, as `cellctl eval` and the factory's held-out split judge them): the order ``decide``
    follows on all views at once, REJECT if any is, else RECHECK if any is, else PASS; the
    first of the most severe, with its reason. No decision at all is RECHECK, as no views is."""
    if not decisions:
        return Decision(Outcome.RECHECK, "no views", None, None)
    return max(decisions, key=lambda d: SEVERITY[d.outcome])
