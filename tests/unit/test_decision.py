from __future__ import annotations

import math

from cellctl.decision import Decision, ViewResult, combine, decide
from cellctl.fault import Fault, Step
from cellctl.outcome import Outcome

NAMES = ["head@0", "head@90", "shank[r0,c0]"]


def views(*scores: float | None, problems: dict[str, str] | None = None) -> list[ViewResult]:
    problems = problems or {}
    return [
        ViewResult(n, n.split("@")[0].split("[")[0], s, 1.0, problems.get(n))
        for n, s in zip(NAMES, scores, strict=True)
    ]


def test_all_clean_views_pass():
    d = decide(views(0.01, 0.2, 0.49), 0.5)
    assert d.outcome is Outcome.PASS and d.max_score == 0.49 and d.worst_view == "shank[r0,c0]"


def test_one_view_at_threshold_rejects_and_names_it():
    d = decide(views(0.01, 0.5, 0.1), 0.5)
    assert d.outcome is Outcome.REJECT and "head@90" in d.reason


def test_nan_score_is_recheck_not_pass():
    d = decide(views(0.01, math.nan, 0.1), 0.5)
    assert d.outcome is Outcome.RECHECK and "head@90" in d.reason


def test_a_missing_score_is_recheck_and_a_fault_is_its_reason():
    assert decide(views(0.01, None, 0.1), 0.5).outcome is Outcome.RECHECK
    assert decide([], 0.5, Fault(Step.FRAME, "timeout")).reason == "frame: timeout"


def test_fault_gives_recheck_but_a_seen_defect_still_rejects():
    lost = Fault(Step.STRIP, "lost")
    assert decide(views(0.1, 0.1, 0.1), 0.5, lost).outcome is Outcome.RECHECK
    assert decide(views(0.9, 0.1, 0.1), 0.5, lost).outcome is Outcome.REJECT


def test_no_views_never_pass():
    assert decide([], 0.5).outcome is Outcome.RECHECK


def test_an_untrusted_view_is_recheck_with_its_reason_even_when_it_scores_high():
    ood = {"head@90": "out of distribution (ood 51.0 > 30.0)"}
    d = decide(views(0.1, 0.1, 0.1, problems=ood), 0.5)
    assert d.outcome is Outcome.RECHECK and d.reason == "head@90: out of distribution (ood 51.0 > 30.0)"
    # its score means nothing: a high one is no defect seen, the part goes to a person
    assert decide(views(0.1, 0.99, 0.1, problems=ood), 0.5).outcome is Outcome.RECHECK
    # a trusted view that shows a defect still rejects
    assert decide(views(0.97, 0.99, 0.1, problems=ood), 0.5).outcome is Outcome.REJECT


def test_part_level_problems_block_a_pass_and_are_named_counted_beyond_three():
    problems = [f"head@{a}: no part seen" for a in (0, 90, 180, 270)]
    d = decide(views(0.1, 0.1, 0.1), 0.5, None, problems)
    assert d.outcome is Outcome.RECHECK
    assert d.reason.startswith("head@0: no part seen; head@90") and d.reason.endswith("(and 1 more)")


def test_a_fault_renders_once_from_an_exception_without_a_message():
    assert Fault.of(Step.INFER, RuntimeError()).reason == "infer: RuntimeError"


def test_the_grey_zone_sends_an_unsure_part_to_recheck_naming_the_view():
    d = decide(views(0.01, 0.3, 0.12), 0.5, recheck_threshold=0.1)
    assert d.outcome is Outcome.RECHECK
    assert d.reason.startswith("head@90: p=0.300") and "shank[r0,c0]: p=0.120" in d.reason
    assert decide(views(0.01, 0.09, 0.02), 0.5, recheck_threshold=0.1).outcome is Outcome.PASS
    assert decide(views(0.01, 0.6, 0.3), 0.5, recheck_threshold=0.1).outcome is Outcome.REJECT
    # without a grey zone the same scores pass, as before
    assert decide(views(0.01, 0.3, 0.12), 0.5).outcome is Outcome.PASS


def test_views_decided_apart_combine_as_decide_takes_them_together():
    clean, seen, unsure = (
        ViewResult("head@0", "head", 0.1, 1.0, None),
        ViewResult("shank[r0,c0]", "shank", 0.9, 1.0, None),
        ViewResult("head@90", "head", None, None, "out of distribution"),
    )
    apart = [decide([v], 0.5) for v in (clean, seen, unsure)]
    assert combine(apart).outcome == decide([clean, seen, unsure], 0.5).outcome == Outcome.REJECT
    assert combine(apart[::2]).outcome == decide([clean, unsure], 0.5).outcome == Outcome.RECHECK
    assert combine(apart[:1]).outcome == decide([clean], 0.5).outcome == Outcome.PASS
    assert (
        combine([]) == Decision(Outcome.RECHECK, "no views", None, None) and decide([], 0.5).outcome == Outcome.RECHECK
    )
