"""A model package's card.json is input like any file: `cellctl promote` (the deployment gate)
and `cellctl check` validate the part of it they read, in one place
(``cellctl.config.resolve.PackageCard``), and refuse a malformed or impossible card with exit 2
(check: its problem line, exit 1) and one line naming the file, the JSON path and what is
allowed; never a traceback, never exit 70. The gate also refuses figures measured at another
decision threshold than the profile's now.

Packages are real folders: the shipped default package's card (profiles/models/package-card.json,
written by `cellctl train` before cards recorded ``heldout_decision``) beside the shipped INT8
model, edited case by case; the commands run in-process through the CLI's own ``main``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cellctl.cli import main as cli
from cellctl.config import file_sha256
from tests.conftest import PROFILES

P = "m8x40-hex"
SHIPPED_CARD: dict[str, Any] = json.loads((PROFILES / "models" / "package-card.json").read_text())
PART = ("heldout_parts", "int8", P, "part")
HEAD = ("heldout", "int8", P, "head")


@pytest.fixture(scope="module")
def int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped INT8 model, copied once: packages link it, profiles run it (nothing the gate
    might write lands in the repository)."""
    path = tmp_path_factory.mktemp("shipped") / "student-int8.onnx"
    shutil.copyfile(PROFILES / "models" / "student-int8.onnx", path)
    return path


def package(folder: Path, int8: Path, card: dict[str, Any] | None = None, raw: bytes | None = None) -> Path:
    folder.mkdir()
    try:
        os.link(int8, folder / "student-int8.onnx")
    except OSError:
        shutil.copyfile(int8, folder / "student-int8.onnx")
    text = raw if raw is not None else json.dumps(SHIPPED_CARD if card is None else card).encode()
    (folder / "card.json").write_bytes(text)
    return folder


def profile(folder: Path, model: Path, **decision: float) -> Path:
    """The shipped m8x40-hex profile running ``model``, with these decision settings and a speed
    tolerance no timing noise reaches (timing is not under test here)."""
    doc = yaml.safe_load((PROFILES / f"{P}.yaml").read_text())
    doc["model"] = {"path": str(model), "sha256": file_sha256(model)}
    doc["decision"] = doc["decision"] | decision
    doc["promotion"] = {"speed_tolerance": 10}
    path = folder / f"{P}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def edited(*keys: str, value: Any = None, drop: bool = False) -> Callable[[dict[str, Any]], None]:
    def edit(card: dict[str, Any]) -> None:
        node = card
        for key in keys[:-1]:
            node = node[key]
        if drop:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value

    return edit


def part(**figures: Any) -> Callable[[dict[str, Any]], None]:
    def edit(card: dict[str, Any]) -> None:
        card["heldout_parts"]["int8"][P]["part"].update(figures)

    return edit


COUNT = "must be a count: a whole number from 0 to 2**53"
ADDS_UP = "good + defective must equal n"
# (id, the card's text or an edit of the shipped card, JSON path named, what the line says is allowed)
BAD_CARDS: list[tuple[str, bytes | Callable[[dict[str, Any]], None], str, str]] = [
    ("nested-100k", b"[" * 100_000 + b"]" * 100_000, "", "nested too deep"),
    ("nested-object", b'{"heldout":' * 5000 + b"{}" + b"}" * 5000, "", "nested too deep"),
    ("latin-1", b'{"heldout": "\xe9", "models": {}}', "", "not UTF-8 text"),
    ("truncated", b'{"heldout": ', "", "not valid JSON"),
    ("a-list", b"[]", "", "must be a JSON object"),
    (
        "nan",
        json.dumps({**SHIPPED_CARD, "int8_vs_fp32": {"items": 1, "views": float("nan")}}).encode(),
        "int8_vs_fp32.views",
        COUNT,
    ),
    ("heldout-list", edited("heldout", value=[]), "heldout", "must be a JSON object (got a list)"),
    ("heldout-int8-null", edited("heldout", "int8", value=None), "heldout.int8", "must be a JSON object (got null)"),
    ("models-list", edited("models", value=[]), "models", "must be a JSON object"),
    ("models-int8-string", edited("models", "int8", value="x"), "models.int8", "must be a JSON object"),
    ("sha256-short", edited("models", "int8", "sha256", value="abc"), "models.int8.sha256", "64 lowercase hex"),
    ("kind-string", edited(*HEAD, value="x"), "heldout.int8.m8x40-hex.head", "must be a JSON object"),
    ("n-string", edited(*HEAD, "n", value="abc"), "heldout.int8.m8x40-hex.head.n", COUNT),
    ("n-bool", edited(*HEAD, "n", value=True), "heldout.int8.m8x40-hex.head.n", COUNT),
    ("escapes-0.99", edited(*HEAD, "escapes", value=0.99), "heldout.int8.m8x40-hex.head.escapes", COUNT),
    ("escapes-missing", edited(*HEAD, "escapes", drop=True), "heldout.int8.m8x40-hex.head.escapes", "required"),
    (
        "rechecks-missing",
        edited(*PART, "rechecks", drop=True),
        "heldout_parts.int8.m8x40-hex.part.rechecks",
        "required",
    ),
    ("part-list", edited(*PART, value=[1]), "heldout_parts.int8.m8x40-hex.part", "must be a JSON object"),
    ("part-empty", edited(*PART, value={}), "heldout_parts.int8.m8x40-hex.part.n", "required"),
    ("part-n-0", part(n=0), "heldout_parts.int8.m8x40-hex.part", f"{ADDS_UP} (70 + 39 != 0)"),
    ("part-n-string", part(n="109"), "heldout_parts.int8.m8x40-hex.part.n", COUNT),
    ("impossible", part(n=5, good=1, defective=1000), "heldout_parts.int8.m8x40-hex.part", f"{ADDS_UP} (1 + 1000"),
    ("negative", part(false_rejects=-50, rechecks=-50), "heldout_parts.int8.m8x40-hex.part.false_rejects", COUNT),
    ("escapes-over-defective", part(escapes=40), "heldout_parts.int8.m8x40-hex.part", "escapes must be at most"),
    ("false-rejects-over-good", part(false_rejects=71), "heldout_parts.int8.m8x40-hex.part", "false_rejects must"),
    (
        "calls-over-n",
        part(escapes=30, false_rejects=50, rechecks=30),
        "heldout_parts.int8.m8x40-hex.part",
        "escapes + false_rejects + rechecks must be at most n",
    ),
    ("more-parts-than-items", part(n=1000, good=961), "heldout_parts.int8.m8x40-hex.part", "more parts than"),
    (
        "views-differing-false",
        edited("int8_vs_fp32", "views_differing", value=False),
        "int8_vs_fp32.views_differing",
        COUNT,
    ),
    (
        "views-differing-over-views",
        edited("int8_vs_fp32", "views_differing", value=3000),
        "int8_vs_fp32",
        "views_differing at most views",
    ),
    ("comparison-missing", edited("int8_vs_fp32", drop=True), "int8_vs_fp32", "required field is missing"),
    (
        "threshold-1.5",
        edited("heldout_decision", value={P: {"threshold": 1.5, "recheck_threshold": None}}),
        "heldout_decision.m8x40-hex.threshold",
        "must be a probability",
    ),
    (
        "recheck-over-threshold",
        edited("heldout_decision", value={P: {"threshold": 0.5, "recheck_threshold": 0.6}}),
        "heldout_decision.m8x40-hex",
        "recheck_threshold must not exceed threshold",
    ),
    (
        "recheck-unrecorded",
        edited("heldout_decision", value={P: {"threshold": 0.5}}),
        "heldout_decision.m8x40-hex.recheck_threshold",
        "required field is missing",
    ),
    (
        "quantization-threshold-string",
        edited("int8_quantization", "thresholds", value=["0.5"]),
        "int8_quantization.thresholds.0",
        "must be a probability",
    ),
]


def bad_package(root: Path, int8: Path, content: bytes | Callable[[dict[str, Any]], None]) -> Path:
    if isinstance(content, bytes):
        return package(root / "pkg", int8, raw=content)
    card = copy.deepcopy(SHIPPED_CARD)
    content(card)
    return package(root / "pkg", int8, card)


def one_line(err: str) -> str:
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("content", "where", "allowed"), [c[1:] for c in BAD_CARDS], ids=[c[0] for c in BAD_CARDS])
def test_the_gate_refuses_a_malformed_card_in_one_line(
    content: bytes | Callable[[dict[str, Any]], None],
    where: str,
    allowed: str,
    int8: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pkg = bad_package(tmp_path, int8, content)
    path = profile(tmp_path, int8)
    before = path.read_bytes()
    assert cli(["promote", str(pkg), "--profile", str(path), "--dry-run", "--rounds", "1"]) == 2
    out, err = capsys.readouterr()
    line = one_line(err)
    assert line.startswith(f"error: {pkg / 'card.json'}: {where}{': ' if where else ''}"), line
    assert allowed in line, line
    assert out == "" and path.read_bytes() == before


@pytest.mark.parametrize(("content", "where", "allowed"), [c[1:] for c in BAD_CARDS], ids=[c[0] for c in BAD_CARDS])
def test_check_refuses_a_profile_running_a_model_of_a_package_with_a_malformed_card(
    content: bytes | Callable[[dict[str, Any]], None],
    where: str,
    allowed: str,
    int8: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pkg = bad_package(tmp_path, int8, content)
    path = profile(tmp_path, pkg / "student-int8.onnx")
    assert cli(["check", str(path)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {path}:") and " model.path: " in line, line
    assert f"{pkg / 'card.json'}: {where}" in line and allowed in line, line


def promote_json(pkg: Path, path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = cli(["promote", str(pkg), "--profile", str(path), "--dry-run", "--json", "--rounds", "1"])
    return code, json.loads(capsys.readouterr().out)


MEASURED_AT_05 = "held-out figures measured at threshold 0.5, recheck_threshold unset"


def test_the_shipped_package_stays_promotable_and_checkable(
    int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its card predates ``heldout_decision``: its ``int8_quantization.thresholds`` ([0.5], the
    one threshold of every profile it was trained for) says what its figures were measured at."""
    assert "heldout_decision" not in SHIPPED_CARD and SHIPPED_CARD["int8_quantization"]["thresholds"] == [0.5]
    pkg = package(tmp_path / "pkg", int8)
    code, result = promote_json(pkg, profile(tmp_path, int8), capsys)
    assert code == 0 and not result["failed"], result["failed"]
    assert f"{MEASURED_AT_05}; profile m8x40-hex decides at threshold 0.5, recheck_threshold unset" in result["passed"]
    assert result["figures"]["heldout_parts_int8"] == {
        "n": 109,
        "good": 70,
        "defective": 39,
        "escapes": 0,
        "false_rejects": 0,
        "rechecks": 0,
    }
    assert cli(["check", str(profile(tmp_path, pkg / "student-int8.onnx"))]) == 0


@pytest.mark.parametrize(
    ("decision", "now"),
    [
        ({"threshold": 0.999}, "threshold 0.999, recheck_threshold unset"),
        ({"recheck_threshold": 0.3}, "threshold 0.5, recheck_threshold 0.3"),
    ],
)
def test_figures_measured_at_another_threshold_are_refused(
    decision: dict[str, float], now: str, int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg = package(tmp_path / "pkg", int8)
    path = profile(tmp_path, int8, **decision)
    before = path.read_bytes()
    code, result = promote_json(pkg, path, capsys)
    assert code == 1 and not result["promoted"] and path.read_bytes() == before
    assert result["failed"] == [
        f"{MEASURED_AT_05}; profile m8x40-hex decides at {now} "
        "(figures measured at another threshold say nothing of this one)"
    ]


def test_a_card_recording_its_thresholds_is_held_to_them(
    int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A card of this `cellctl train` records each profile's decision (``heldout_decision``),
    which wins over the older card's quantization thresholds."""
    card = SHIPPED_CARD | {"heldout_decision": {P: {"threshold": 0.999, "recheck_threshold": 0.3}}}
    pkg = package(tmp_path / "pkg", int8, card)
    code, result = promote_json(pkg, profile(tmp_path, int8, threshold=0.999, recheck_threshold=0.3), capsys)
    assert code == 0 and not result["failed"], result["failed"]
    assert any("measured at threshold 0.999, recheck_threshold 0.3; profile" in p for p in result["passed"])
    code, result = promote_json(pkg, profile(tmp_path, int8), capsys)  # the shipped profile: 0.5
    assert code == 1
    assert result["failed"] == [
        "held-out figures measured at threshold 0.999, recheck_threshold 0.3; profile m8x40-hex decides at "
        "threshold 0.5, recheck_threshold unset (figures measured at another threshold say nothing of this one)"
    ]


@pytest.mark.parametrize(
    "card",
    [
        SHIPPED_CARD | {"heldout_decision": {"m12x80-hex": {"threshold": 0.5, "recheck_threshold": None}}},
        SHIPPED_CARD | {"int8_quantization": SHIPPED_CARD["int8_quantization"] | {"thresholds": [0.5, 0.7]}},
        {k: v for k, v in SHIPPED_CARD.items() if k != "int8_quantization"},
    ],
    ids=["another-profile-only", "two-thresholds", "no-record"],
)
def test_a_card_that_does_not_say_what_its_figures_were_measured_at_is_refused(
    card: dict[str, Any], int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg = package(tmp_path / "pkg", int8, card)
    code, result = promote_json(pkg, profile(tmp_path, int8), capsys)
    assert code == 1
    assert result["failed"] == [
        "the card does not record the decision threshold its m8x40-hex figures were measured at "
        "(heldout_decision.m8x40-hex): re-measure the package with this version's `cellctl train`"
    ]
