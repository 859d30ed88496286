"""Student alone against distilled (issue 9, item 3): the record is refused unless the package is
the default's run with teachers, and the card's table and its choice follow the figures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cellctl.sim.distillation import NotTheSameRun, pod_summary, record, same_run
from cellctl.sim.distillation_table import better, section
from cellctl.sim.model_card import MODELS, PACKAGE_CARD, PACKAGE_SPLIT, PACKAGE_TRAIN, Clock


def _shipped() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return tuple(json.loads((MODELS / f).read_text()) for f in (PACKAGE_TRAIN, PACKAGE_SPLIT, PACKAGE_CARD))  # type: ignore[return-value]


def test_only_the_default_run_with_teachers_added_is_accepted() -> None:
    train, split, _ = _shipped()
    with_teachers = copy.deepcopy(train) | {"teachers": ["resnet34"], "teacher_epochs": 3}
    with_teachers["versions"] = {"torch": "another"}  # a rerun elsewhere: not a difference
    with_teachers["data"] = [d | {"dir": f"/elsewhere/{d['dir']}"} for d in train["data"]]  # folders by name
    checks = same_run(train, split, with_teachers, copy.deepcopy(split))
    assert checks["parts_on_the_same_side"] == len(split["parts"]) > 1000

    with pytest.raises(NotTheSameRun, match="no teachers"):
        same_run(train, split, train, split)
    other_lr = copy.deepcopy(with_teachers)
    other_lr["student"]["lr"] *= 2
    with pytest.raises(NotTheSameRun, match="'student' differs"):
        same_run(train, split, other_lr, split)
    moved = copy.deepcopy(split)
    part = next(p for p, side in moved["parts"].items() if side == "heldout")
    moved["parts"][part] = "train"
    with pytest.raises(NotTheSameRun, match=f"1 parts on another side \\(first {part}\\)"):
        same_run(train, split, with_teachers, moved)
    fewer = copy.deepcopy(with_teachers)
    fewer["data"] = fewer["data"][:-1]
    with pytest.raises(NotTheSameRun, match="'data' differs"):
        same_run(train, split, fewer, split)


def _pod(contrast: tuple[float | None, float | None]) -> dict[str, Any]:
    sweeps = {
        kind: {
            "contrast": {"a90": c and c - 10, "a90_95": c, "n": 60, "hits": 20},
            "length": {"a90": 1.5, "a90_95": 2.0, "n": 60, "hits": 30},
        }
        for kind, c in zip(("head", "shank"), contrast, strict=True)
    }
    return {"sweeps": sweeps, "false_calls": {"false_calls": 0, "n": 60}, "command": "cellctl pod ..."}


def _plant(alone: tuple[int, int], distilled: tuple[int, int]) -> dict[str, Any]:
    def fig(esc: int, fr: int) -> dict[str, int]:
        return {"n": 100, "good": 70, "defective": 30, "escapes": esc, "false_rejects": fr, "rechecks": 0}

    return {
        "conditions": "plant",
        "defect_rate": 0.3,
        "parts": 100,
        "profiles": {"m8x40-hex": {"seed": 1, "alone": fig(*alone), "distilled": fig(*distilled)}},
    }


def _record(default_card: dict[str, Any], plant: dict[str, Any], pods: dict[str, Any]) -> dict[str, Any]:
    distilled = copy.deepcopy(default_card)
    distilled["teachers"] = [
        {
            "arch": "resnet34",
            "parameters": 21.3e6,
            "epochs_run": 3,
            "train_s": 2400.0,
            "heldout": {"head": {"n": 10, "defective": 2, "escapes": 1, "false_rejects": 0}},
        }
    ]
    distilled["distillation"] = {"alpha": 0.1, "temperature": 4.0, "mode": "offline, per tile"}
    return {
        "generated_by": "python -m cellctl.sim.distillation pkD",
        "checks": {"data": 4, "student_options": "identical", "parts_on_the_same_side": 1350},
        "package": distilled,
        "default": {"int8_sha256": default_card["models"]["int8"]["sha256"]},
        "pod": pods,
        "plant": plant,
    }


def test_the_better_student_is_chosen_by_escapes_then_pod_then_cost() -> None:
    _, _, card = _shipped()
    even = {"alone": _pod((100.0, 140.0)), "distilled": _pod((100.0, 140.0))}
    # escapes first: one more escape loses whatever the rest
    rec = _record(card, _plant((1, 0), (0, 9)), even)
    assert better(card, rec) == ("distilled", "escaped parts: 0 against 1")
    # equal escapes: the weaker view kind's POD decides, a curve that never reaches 90 % is worst
    pods = {"alone": _pod((100.0, None)), "distilled": _pod((120.0, 130.0))}
    assert better(card, _record(card, _plant((0, 0), (0, 5)), pods))[0] == "distilled"
    # then the cost of false rejects and rechecks
    best, why = better(card, _record(card, _plant((0, 3), (0, 1)), even))
    assert best == "distilled" and why == "false rejects and rechecks of parts: 1 against 3"
    assert better(card, _record(card, _plant((0, 0), (0, 0)), even)) == ("alone", "equal on every measure of the order")


def test_the_card_section_shows_every_network_and_refuses_a_stale_record() -> None:
    _, _, card = _shipped()
    pods = {"alone": _pod((100.0, 142.0)), "distilled": _pod((95.0, None))}
    rec = _record(card, _plant((0, 2), (1, 0)), pods)
    lines: list[str] = []
    section(card, rec, card["models"]["int8"]["sha256"], lines.append)
    text = "\n".join(lines)
    assert "| teacher resnet34 (21.3 M, 3 epochs) | torch at 0.5, no guard | 1/2, 0/8 |" in text
    rows = [line for line in lines if line.startswith("| student")]
    assert len(rows) == 4 and sum("INT8" in r for r in rows) == 2
    assert "| 90 (100) / 132 (142) | 1.5 (2) / 1.5 (2) |" in text  # a90 (a90/95), head / shank
    assert "| 85 (95) / not reached (not reached) |" in text
    assert "the better student is the **alone** one (escaped parts: 0 against 1)" in text

    lines.clear()
    section(card, rec, "0" * 64, lines.append)
    assert "measured against another default model" in "\n".join(lines)
    lines.clear()
    section(card, None, "0" * 64, lines.append)
    assert "Not measured" in "\n".join(lines)


def test_a_pod_report_keeps_its_figures_and_drops_its_trials() -> None:
    report = {
        "parts": 60,
        "seed": 7005,
        "model": {"sha256": "x"},
        "sweeps": {"head": {"contrast": {"a90_95": 100.0, "n": 60, "hits": 17, "trials": [[1.0, "PASS"]] * 60}}},
        "false_calls": {"false_calls": 0, "n": 60},
        "plot": "x.png",
    }
    out = pod_summary(report)
    assert "trials" not in out["sweeps"]["head"]["contrast"] and out["sweeps"]["head"]["contrast"]["a90_95"] == 100.0
    assert out["false_calls"] == report["false_calls"] and "plot" not in out


def test_the_same_model_as_both_students_measures_the_same(tmp_path: Path) -> None:
    """The whole record through real processes (cellctl pod, sim --export, eval --parts), tiny:
    a package that is the default's run with a teacher named, holding the default's own INT8
    model, must come out with identical figures for both students."""
    train, split, card = _shipped()
    package = tmp_path / "pkD"
    package.mkdir()
    (package / "card.json").write_text(json.dumps(card | {"teachers": [], "distillation": None}))
    (package / "train.json").write_text(json.dumps(train | {"teachers": ["resnet34"]}))
    (package / "split.json").write_text(json.dumps(split))
    (package / "student-int8.onnx").symlink_to(MODELS / "student-int8.onnx")
    rec = record(package, pod_parts=2, plant_parts=2, clock=Clock())
    assert rec["checks"]["parts_on_the_same_side"] == len(split["parts"])
    assert rec["pod"]["alone"]["sweeps"] == rec["pod"]["distilled"]["sweeps"]
    assert rec["pod"]["alone"]["false_calls"]["n"] == 2
    for profile, figures in rec["plant"]["profiles"].items():
        assert figures["alone"] == figures["distilled"] and figures["alone"]["n"] == 2, profile
        assert figures["alone"]["unreadable"] == 0
    assert better(card, rec) == ("alone", "equal on every measure of the order")


def test_the_card_is_rewritten_from_the_records_without_measuring(tmp_path: Path) -> None:
    from cellctl.sim.model_card import CARD_FILE, CARD_MD, main

    assert main(["--records-only", "--out", str(tmp_path)]) == 2  # nothing measured to rewrite
    measured = json.loads((MODELS / CARD_FILE).read_text())
    (tmp_path / CARD_FILE).write_text(json.dumps(measured))
    assert main(["--records-only", "--out", str(tmp_path)]) == 0
    card = json.loads((tmp_path / CARD_FILE).read_text())
    assert {k: v for k, v in card.items() if k not in ("train", "distillation", "records_reread_by")} == {
        k: v for k, v in measured.items() if k not in ("train", "distillation", "records_reread_by")
    }
    text = (tmp_path / CARD_MD).read_text()
    assert "## Student alone against distilled, beside the teachers" in text and "--records-only" in text
    assert (card["distillation"] is None) == ("Not measured" in text)
