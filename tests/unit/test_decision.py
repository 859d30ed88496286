from __future__ import annotations

import math

from cellctl.decision import decide
from cellctl.messages import Outcome

VIEWS = ["head@0", "head@90", "shank[r0,c0]"]


def test_all_clean_views_pass():
    d = decide(VIEWS, [0.01, 0.2, 0.49], 0.5, None)
    assert d.outcome is Outcome.PASS and d.max_score == 0.49 and d.worst_view == "shank[r0,c0]"


def test_one_view_at_threshold_rejects_and_names_it():
    d = decide(VIEWS, [0.01, 0.5, 0.1], 0.5, None)
    assert d.outcome is Outcome.REJECT and "head@90" in d.reason


def test_nan_score_is_recheck_not_pass():
    d = decide(VIEWS, [0.01, math.nan, 0.1], 0.5, None)
    assert d.outcome is Outcome.RECHECK and "head@90" in d.reason


def test_missing_scores_are_recheck():
    assert decide(VIEWS, [0.01, 0.1], 0.5, None).outcome is Outcome.RECHECK
    assert decide(VIEWS, None, 0.5, "frame: timeout").reason == "frame: timeout"


def test_fault_gives_recheck_but_a_seen_defect_still_rejects():
    assert decide(VIEWS, [0.1, 0.1, 0.1], 0.5, "strip: lost").outcome is Outcome.RECHECK
    assert decide(VIEWS, [0.9, 0.1, 0.1], 0.5, "strip: lost").outcome is Outcome.REJECT
