from __future__ import annotations

import math

from cellctl.decision import decide
from cellctl.fault import Fault, Step
from cellctl.outcome import Outcome

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
    assert decide(VIEWS, None, 0.5, Fault(Step.FRAME, "timeout")).reason == "frame: timeout"


def test_fault_gives_recheck_but_a_seen_defect_still_rejects():
    lost = Fault(Step.STRIP, "lost")
    assert decide(VIEWS, [0.1, 0.1, 0.1], 0.5, lost).outcome is Outcome.RECHECK
    assert decide(VIEWS, [0.9, 0.1, 0.1], 0.5, lost).outcome is Outcome.REJECT


def test_no_views_never_pass():
    assert decide([], [], 0.5, None).outcome is Outcome.RECHECK


def test_a_fault_renders_once_from_an_exception_without_a_message():
    assert Fault.of(Step.INFER, RuntimeError()).reason == "infer: RuntimeError"
