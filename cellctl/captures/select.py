"""Which judged parts the capture store keeps, and why: the views that teach a student most.

A part is kept when it came to RECHECK (the cell could not decide), when the guard found a
view out of distribution (something the model has not seen), when a view's score lies in a
band around the threshold (where the student is unsure, and where a relabelled image moves
the boundary most), and otherwise as a small random sample of PASS and REJECT (so a retrained
student also sees the ordinary parts of this plant, not only its hard cases).

The sample is drawn from a hash of the cell and the part's seq, not from a random generator:
the same run keeps the same parts (a test can say which), and no pattern in part ids or seqs
(every other part another profile) lines up with it as a fixed stride would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from cellctl.config import CaptureSettings
from cellctl.inspection import OOD_PREFIX
from cellctl.outcome import Outcome

RECHECK = "recheck"
OUT_OF_DISTRIBUTION = "out of distribution"
NEAR_THRESHOLD = "near threshold"
SAMPLE = "sample"
NAMED = 3  # views named in a reason; the capture's record holds all of them


def capture_reasons(
    outcome: Outcome,
    scores: Mapping[str, float],
    view_problems: Mapping[str, str],
    threshold: float,
    settings: CaptureSettings,
    cell_id: str,
    seq: int,
) -> tuple[str, ...]:
    """Why the part is worth keeping; empty: it is not."""
    reasons = []
    if outcome is Outcome.RECHECK:
        reasons.append(RECHECK)
    ood = sorted(name for name, problem in view_problems.items() if problem.startswith(OOD_PREFIX))
    if ood:
        reasons.append(f"{OUT_OF_DISTRIBUTION}: {_named(ood)}")
    band = settings.score_band
    near = sorted(name for name, p in scores.items() if abs(p - threshold) <= band)
    if near:
        reasons.append(f"{NEAR_THRESHOLD} ({threshold:g} +- {band:g}): {_named(near)}")
    if not reasons and sampled(cell_id, seq, settings.sample_fraction):
        reasons.append(SAMPLE)
    return tuple(reasons)


def sampled(cell_id: str, seq: int, fraction: float) -> bool:
    """Whether part ``seq`` of ``cell_id`` falls in the random sample of ``fraction``."""
    digest = hashlib.sha256(f"{cell_id}:{seq}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def _named(views: list[str]) -> str:
    more = len(views) - NAMED
    return ", ".join(views[:NAMED]) + (f" and {more} more" if more > 0 else "")
