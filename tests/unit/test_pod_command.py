"""`cellctl pod`: a small real run (simulator renders through the daemon's decision path on
the committed model) and its refusals."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import cv2
import pytest

from cellctl.cli import main
from cellctl.pod.plot import CAPTION_H, PANEL_H, PANEL_W

PARTS = 12
FIGURES = ("a50", "a90", "a90_95")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """One run shared by the checks: 12 good parts, each inspected as it is and with one
    injection per sweep (60 inspections)."""
    plot = tmp_path_factory.mktemp("pod") / "pod.png"
    out, err = io.StringIO(), io.StringIO()
    argv = ["pod", "--profile", "m8x40-hex", "--parts", str(PARTS), "--seed", "3", "--json", "--plot", str(plot)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()), plot, err.getvalue()


def test_json_has_every_sweep_of_every_view_kind(run: tuple[dict[str, Any], Path, str]) -> None:
    report, _, _ = run
    assert report["profile"] == "m8x40-hex" and report["parts"] == PARTS and report["seed"] == 3
    assert "likelihood ratio" in report["bound"] and "RECHECK is not a hit" in report["hit"]
    assert set(report["sweeps"]) == {"head", "shank"}
    for kind, sweeps in report["sweeps"].items():
        assert set(sweeps) == {"contrast", "length"}, kind
        for name, s in sweeps.items():
            where = f"{kind} {name}"
            assert s["n"] == PARTS and len(s["trials"]) == PARTS, where
            outcomes = [o for _, o in s["trials"]]
            assert set(outcomes) <= {"PASS", "REJECT", "RECHECK"}, where
            assert s["hits"] == outcomes.count("REJECT") and s["rechecks"] == outcomes.count("RECHECK"), where
            assert 0 <= s["hits_elsewhere"] <= s["hits"], where
            lo, hi = s["range"]
            sizes = sorted(size for size, _ in s["trials"])
            # the sweep's sizes, log-spaced over its whole range, each tried once
            assert sizes[0] == pytest.approx(lo, rel=1e-3) and sizes[-1] == pytest.approx(hi, rel=1e-3), where
            assert len(set(sizes)) == PARTS, where
            for key in FIGURES:  # a figure, or null with the reason
                value = s[key]
                if value is None:
                    assert s["why"].get(key), (where, key)
                else:
                    assert math.isfinite(value) and lo <= value <= hi, (where, key, value)
            if s["a90"] is not None and s["a90_95"] is not None:
                assert s["a90_95"] >= s["a90"], where
            # the profile's claim beside what the trials show (m8x40-hex: 30 grey levels, 1 mm)
            assert s["profile_minimum"] == {"contrast": 30.0, "length": 1.0}[name], where
            if s["a90_95"] is not None:
                assert s["meets_profile_minimum"] == (s["a90_95"] <= s["profile_minimum"]), where
            assert (s["b0"] is None) == (s["reason"] is not None), where
            # the diagnosis without the RECHECKs fits exactly the judged trials
            ex = s["excluding_rechecks"]
            assert ex["n"] == PARTS - s["rechecks"] and ex["hits"] == s["hits"], where
            assert all(ex[key] is not None or ex["why"].get(key) for key in FIGURES), where
    assert report["sweeps"]["head"]["contrast"]["fixed"] == {"length_mm": 3.0}
    assert report["sweeps"]["shank"]["length"]["fixed"] == {"contrast": 80.0}


def test_false_calls_are_counted_on_the_same_good_parts(run: tuple[dict[str, Any], Path, str]) -> None:
    fc = run[0]["false_calls"]
    assert fc["n"] == PARTS
    assert 0 <= fc["false_calls"] + fc["rechecks"] <= PARTS
    assert fc["rate"] == pytest.approx(fc["false_calls"] / PARTS)
    assert fc["recheck_rate"] == pytest.approx(fc["rechecks"] / PARTS)
    # exact one-sided 95 % bound: 0 false calls in 12 parts still allows up to 22 %
    assert fc["rate"] < fc["upper95"] <= 1.0
    assert set(fc["by_kind"]) == {"head", "shank"}


def test_plot_is_a_2x2_png_and_progress_went_to_stderr(run: tuple[dict[str, Any], Path, str]) -> None:
    report, plot, err = run
    assert report["plot"] == str(plot)
    img = cv2.imread(str(plot))
    assert img is not None and img.shape == (CAPTION_H + 2 * PANEL_H, 2 * PANEL_W, 3)
    assert f"{5 * PARTS}/{5 * PARTS} parts inspected" in err


def test_unknown_profile_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pod", "--profile", "no-such-part", "--parts", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "no-such-part" in err


def test_profile_whose_model_hash_differs_is_one_line_exit_2(
    profiles_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = profiles_copy / "m8x40-hex.yaml"
    text = path.read_text()
    start = text.index('sha256: "') + len('sha256: "')
    path.write_text(text[:start] + "0" * 64 + text[start + 64 :])
    assert main(["pod", "--profile", str(path), "--parts", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "model.sha256" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["pod", "--profile", "m8x40-hex", "--parts", "0"], "--parts: must be at least 1"),
        (["pod", "--profile", "m8x40-hex", "--seed", "-1"], "--seed: must be 0 or more"),
        (["pod", "--parts", "3"], "--profile"),
        (["pod", "--profile", "m8x40-hex", "--plot", "/no/such/folder/pod.png"], "does not exist"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and says in err


def test_a_profile_minimum_is_met_only_where_the_trials_show_it() -> None:
    from cellctl.sim.pod import demonstrated_at

    demo = {"size": 20.0, "trials": 29, "pod_lower": 0.05 ** (1 / 29)}
    assert demonstrated_at({"a90_95": 25.0}, 30.0)
    assert not demonstrated_at({"a90_95": 77.7}, 30.0)
    assert demonstrated_at({"a90_95": None, "demonstration": demo}, 30.0)  # 29 of 29 hits from 20
    assert not demonstrated_at({"a90_95": None, "demonstration": demo}, 15.0)  # not from 15
    assert not demonstrated_at({"a90_95": None, "demonstration": {**demo, "trials": 20, "pod_lower": 0.86}}, 30.0)
    assert not demonstrated_at({"a90_95": None, "demonstration": None}, 30.0)  # all misses, or too few trials
