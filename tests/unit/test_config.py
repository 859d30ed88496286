"""Cell config and part profile validation, as `cellctl check` reports it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cellctl.cli import main as cli
from cellctl.config import (
    MIN_INDICATION_MODEL_PX,
    ConfigError,
    indication_px,
    load_cell,
    load_profiles,
    resolve_profile,
)
from tests.conftest import PROFILES


def test_every_shipped_profile_and_the_sim_cell_pass_check(capsys):
    files = sorted(PROFILES.glob("*.yaml"))
    assert len(files) >= 3
    assert cli(["check", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: ") == len(files)


def test_shipped_profiles_show_their_smallest_indication_large_enough_to_the_model():
    cell = load_cell(PROFILES / "cell-sim.yaml")
    profiles = load_profiles(PROFILES / "cell-sim.yaml", cell)
    assert {"m8x40-hex", "m12x80-hex"} <= set(profiles)
    for rp in profiles.values():
        assert min(indication_px(rp.profile).values()) >= MIN_INDICATION_MODEL_PX


def test_tiles_too_coarse_for_the_smallest_indication_are_refused_naming_the_field(profiles_copy):
    path = _break(profiles_copy, "  min_indication_length_mm: 1.0", "  min_indication_length_mm: 0.3")
    with pytest.raises(ConfigError) as err:
        resolve_profile(path, verify_model=False)
    fields = {p.field: p for p in err.value.problems}
    assert set(fields) == {"preprocess.head_tile_px", "preprocess.shank_tile_px"}
    assert "0.3 mm indication" in fields["preprocess.shank_tile_px"].message
    assert fields["preprocess.shank_tile_px"].line == _line(path, "shank_tile_px")


def _break(profiles_copy: Path, old: str, new: str) -> Path:
    path = profiles_copy / "m8x40-hex.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "field", "needle", "says"),
    [
        (
            "  exposure_us: 8000",
            "  exposure_us: -5",
            "frame_camera.exposure_us",
            "exposure_us: -5",
            "greater than or equal to 10",
        ),
        (
            "  intensity_pct: 80",
            "  intensity_pct: 80\n  brightnes: 3",
            "lighting.brightnes",
            "brightnes: 3",
            "unknown field",
        ),
        (
            "  pixel_format: BayerRG8",
            "  pixel_format: BayerGB16",
            "frame_camera.pixel_format",
            "BayerGB16",
            "'BayerRG8', 'RGB8' or 'Mono8'",
        ),
        ("  threshold: 0.5", "  threshold: high", "decision.threshold", "threshold: high", "valid number"),
        (
            "  threshold: 0.5",
            "  threshold: 0.5\n  recheck_threshold: 0.7",
            "decision",
            "decision:",
            "recheck_threshold must not exceed threshold",
        ),
        (
            "head_positions_deg: [0, 90, 180, 270]",
            "head_positions_deg: [0, 180, 90]",
            "head_positions_deg",
            "head_positions_deg",
            "ascending",
        ),
        (
            "  head_tile_px: 512",
            "  head_tile_px: 2100",
            "preprocess.head_tile_px",
            "head_tile_px: 2100",
            "less than or equal to 2056",
        ),
        (  # longer than the line period at 1 rev/s and 2048 lines: every line smeared round the part
            "  exposure_us: 20",
            "  exposure_us: 900",
            "line_scan.exposure_us",
            "exposure_us: 900",
            "smear over 1.8 lines around the part; at most 488.3",
        ),
        (  # a check across fields names the field it is about, and its line
            "  shank_tile_px: {axis: 680, around: 512}",
            "  shank_tile_px: {axis: 680, around: 4096}",
            "preprocess.shank_tile_px",
            "around: 4096",
            "must fit in the 2048 x 2048 strip",
        ),
        (
            "  required_coverage: 0.98",
            "  required_coverage: 1.5",
            "inspection.required_coverage",
            "required_coverage: 1.5",
            "less than or equal to 1",
        ),
    ],
)
def test_broken_profile_names_file_line_field_and_what_is_allowed(profiles_copy, old, new, field, needle, says):
    path = _break(profiles_copy, old, new)
    with pytest.raises(ConfigError) as err:
        resolve_profile(path, verify_model=False)
    (problem,) = err.value.problems
    assert problem.file == str(path)
    assert problem.field == field
    assert says in problem.message
    if field:
        assert problem.line == _line(path, needle)


def test_missing_section_is_reported_by_name(profiles_copy):
    path = profiles_copy / "m8x40-hex.yaml"
    lines = path.read_text().splitlines()
    start = lines.index("geometry:")
    path.write_text("\n".join(lines[:start]) + "\n")
    with pytest.raises(ConfigError) as err:
        resolve_profile(path, verify_model=False)
    assert [(p.field, p.message) for p in err.value.problems] == [("geometry", "required field is missing")]


def test_yaml_syntax_error_names_the_line(profiles_copy):
    path = _break(profiles_copy, "  gain_db: 0\n", "  gain_db: [0\n")
    with pytest.raises(ConfigError) as err:
        resolve_profile(path, verify_model=False)
    (problem,) = err.value.problems
    assert "YAML syntax" in problem.message
    assert abs(problem.line - _line(path, "gain_db: [0")) <= 1


def test_model_whose_sha256_differs_is_refused(profiles_copy):
    path = profiles_copy / "m8x40-hex.yaml"
    text = path.read_text()
    path.write_text(re.sub(r'sha256: "[0-9a-f]{64}"', 'sha256: "' + "ab" * 32 + '"', text, count=1))
    with pytest.raises(ConfigError) as err:
        resolve_profile(path)
    (problem,) = err.value.problems
    assert problem.field == "model.sha256" and "does not match" in problem.message
    assert problem.line == _line(path, "sha256:")


def test_encoder_scaling_must_give_the_profile_lines_per_revolution(profiles_copy):
    path = _break(profiles_copy, "  encoder_divider: 4", "  encoder_divider: 2")
    cell = load_cell(profiles_copy / "cell-sim.yaml")
    with pytest.raises(ConfigError) as err:
        resolve_profile(path, cell)
    (problem,) = err.value.problems
    assert problem.field == "line_scan.lines_per_revolution"
    assert "8192 x 1 / 2 = 4096" in problem.message


def test_cell_config_with_unknown_default_profile_is_rejected(profiles_copy):
    path = profiles_copy / "cell-sim.yaml"
    path.write_text(path.read_text().replace("default_profile: m8x40-hex", "default_profile: m99"))
    with pytest.raises(ConfigError) as err:
        load_profiles(path, load_cell(path))
    (problem,) = err.value.problems
    assert problem.field == "default_profile" and "m99" in problem.message
    assert problem.line == _line(path, "default_profile")


def test_check_command_exits_non_zero_and_prints_file_and_line(profiles_copy):
    path = _break(profiles_copy, "  speed_rps: 1.0", "  speed_rps: 50")
    good = profiles_copy / "m12x80-hex.yaml"
    run = subprocess.run(
        [sys.executable, "-m", "cellctl", "check", str(good), str(path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    assert f"ok: {good}" in run.stdout
    assert f"{path}:{_line(path, 'speed_rps: 50')}: motion.speed_rps:" in run.stderr
    assert "less than or equal to 5" in run.stderr
