"""Bad invocations of `cellctl`: each ends in one `error:` line and a documented exit code,
never a traceback, a hang or a silent wrong answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellctl.cli import main as cli
from tests.conftest import PROFILES

MODELS = PROFILES / "models"
SIM_CELL = PROFILES / "cell-sim.yaml"
USAGE, INTERNAL = 2, 70


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    binary = tmp_path / "blob.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    readonly_parent = tmp_path / "plainfile"
    readonly_parent.write_text("x")
    return {"BIN": str(binary), "DIR": str(empty), "FILE": str(readonly_parent), "TMP": str(tmp_path)}


# (argv, exit code, words the error line must hold); {NAME} is filled from the files fixture
CASES = [
    (["sim", "--parts", "0"], USAGE, "--parts: must be at least 1"),
    (["sim", "--parts", "-3"], USAGE, "--parts: must be at least 1"),
    (["sim", "--parts", "many"], USAGE, "not an integer"),
    (["sim", "--defect-rate", "1.5"], USAGE, "--defect-rate: must be in [0, 1]"),
    (["sim", "--defect-rate", "nan"], USAGE, "--defect-rate: must be in [0, 1]"),
    (["sim", "--time-scale", "-1"], USAGE, "--time-scale: must be a finite number >= 0"),
    (["sim", "--time-scale", "nan"], USAGE, "--time-scale"),
    (["sim", "--time-scale", "inf"], USAGE, "--time-scale"),
    (["sim", "--seed", "-5"], USAGE, "--seed: must be 0 or more"),
    (["sim", "--profile", "nope", "--parts", "1"], USAGE, "'nope'"),
    (["sim", "--config", "/nonexistent.yaml"], USAGE, "no such file"),
    (["sim", "--records", "{FILE}/r.db"], USAGE, "--records"),
    (["sim", "--export", "{FILE}/out"], USAGE, "--export"),
    (["verdict", "--records", "{BIN}"], USAGE, "cannot read the records"),
    (["verdict", "--records", "{TMP}"], USAGE, "not a file"),
    (["verdict", "--config", "/nonexistent.yaml"], USAGE, "no such file"),
    (["verdict", "--seq", "-1", "--records", "{BIN}"], USAGE, "--seq: must be 0 or more"),
    (["verdict", "--seq", "1", "--part", "P1", "--records", "{BIN}"], USAGE, "not allowed with"),
    (["check"], USAGE, "required: FILE"),
    (["check", "/nonexistent.yaml"], 1, "cannot read: No such file"),
    (["check", "{DIR}"], 1, "is a directory"),
    (["check", "{BIN}"], 1, "not UTF-8"),
    (["eval", "--profile", "no-such-profile", "{DIR}"], USAGE, "'no-such-profile' is not in"),
    (["eval", "--profile", "m8x40-hex", "/nonexistent"], USAGE, "no such directory"),
    (["eval", "--profile", "m8x40-hex", "{DIR}"], USAGE, "no "),
    (["eval", "--profile", "m8x40-hex", "--model", str(PROFILES / "m8x40-hex.yaml"), "{DIR}"], USAGE, "cannot load it"),
    (["eval", "{DIR}"], USAGE, "--profile"),
    (
        [
            "quantize",
            str(MODELS / "student-int8.onnx"),
            "{TMP}/q.onnx",
            "--calibration",
            "{DIR}",
            "--profile",
            "m8x40-hex",
        ],
        USAGE,
        "already quantized",
    ),
    (
        [
            "quantize",
            str(MODELS / "student-fp32.onnx"),
            "{TMP}/q.onnx",
            "--calibration",
            "/nonexistent",
            "--profile",
            "m8x40-hex",
        ],
        USAGE,
        "--calibration: no such directory",
    ),
    (
        [
            "quantize",
            str(MODELS / "student-fp32.onnx"),
            "{TMP}/q.onnx",
            "--calibration",
            "{DIR}",
            "--profile",
            "m8x40-hex",
        ],
        USAGE,
        "no calibration images",
    ),
    (
        ["quantize", "/nonexistent.onnx", "{TMP}/q.onnx", "--calibration", "{DIR}", "--profile", "m8x40-hex"],
        USAGE,
        "no such file",
    ),
    (
        [
            "quantize",
            str(MODELS / "student-fp32.onnx"),
            str(MODELS / "student-fp32.onnx"),
            "--calibration",
            "{DIR}",
            "--profile",
            "m8x40-hex",
        ],
        USAGE,
        "is the input model",
    ),
    (
        [
            "quantize",
            str(MODELS / "student-fp32.onnx"),
            "{FILE}/q.onnx",
            "--calibration",
            "{DIR}",
            "--profile",
            "m8x40-hex",
            "--max-images",
            "0",
        ],
        USAGE,
        "error: argument",
    ),
    (
        ["quantize", str(MODELS / "student-fp32.onnx"), "{TMP}/q.onnx", "--calibration", "{DIR}"]
        + ["--profile", "m8x40-hex", "--keep-float", "-1"],
        USAGE,
        "--keep-float: must be 0 or more",
    ),
    (["bench", "--fp32", "missing.onnx"], USAGE, "--fp32: no such file"),
    (["bench", "--rounds", "0"], USAGE, "--rounds: must be at least 1"),
    (["bench", "--profile", "nope"], USAGE, "'nope'"),
    (["devices", "--cti", "/nonexistent.cti"], USAGE, "--cti: no such file"),
    (["devices", "--config", "{BIN}"], USAGE, "not UTF-8"),
    (["run", "--config", "/nonexistent.yaml"], USAGE, "cannot read"),
    (["run", "--config", str(SIM_CELL)], USAGE, "emulator:// is served by `cellctl sim` only"),
    (["frobnicate"], USAGE, "invalid choice: 'frobnicate'"),
    (["--log-level", "bogus", "check", "x"], USAGE, "--log-level: invalid choice"),
    (["sim", "--no-such-option"], USAGE, "unrecognized arguments"),
    ([], USAGE, "required: COMMAND"),
]


def _argv(argv: list[str], files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in argv]


@pytest.mark.parametrize(("argv", "code", "says"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_invocation_ends_in_error_lines_and_its_exit_code(argv, code, says, files, capsys):
    try:
        result = cli(_argv(argv, files))
    except SystemExit as exc:  # argparse's own errors
        result = exc.code
    out = capsys.readouterr()
    assert result == code, out.err
    assert "Traceback" not in out.err + out.out
    errors = [line for line in out.err.splitlines() if line.strip()]
    assert errors and all(line.startswith("error: ") for line in errors), out.err
    assert len(errors) == 1 or argv[0] in ("run", "check", "devices"), out.err  # one line per config problem
    assert says in out.err, out.err


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "--parts", "0"],
        ["frobnicate"],
        ["run", "--config", str(SIM_CELL)],
        ["check", "{BIN}"],
        [
            "quantize",
            str(MODELS / "student-int8.onnx"),
            "{TMP}/q.onnx",
            "--calibration",
            "{DIR}",
            "--profile",
            "m8x40-hex",
        ],
    ],
)
def test_as_a_process_no_traceback_and_no_hang(argv, files):
    run = subprocess.run(
        [sys.executable, "-m", "cellctl", *_argv(argv, files)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode in (1, 2)
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("error: ")


def test_unexpected_exception_is_one_internal_error_line(monkeypatch, capsys):
    import cellctl.commands.check as check

    def boom(path):
        raise ZeroDivisionError("the unforeseen\nacross lines")

    monkeypatch.setattr(check, "check_one", boom)
    assert cli(["check", str(SIM_CELL)]) == INTERNAL
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: internal error: ZeroDivisionError: the unforeseen across lines (please report")


def test_interrupt_is_exit_130_with_one_line(monkeypatch, capsys):
    import cellctl.commands.check as check

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "check_one", interrupted)
    assert cli(["check", str(SIM_CELL)]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_sim_accepts_faults_argument():
    from cellctl.cli import build_parser

    args = build_parser().parse_args(["sim", "--faults", "camera-timeout,disk-full"])
    assert args.faults == "camera-timeout,disk-full"


# argparse's own --help swallows write errors itself (exit 0); a command's output is ours: 141
@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), (["check", str(PROFILES / "m8x40-hex.yaml")], 141)])
def test_a_closed_stdout_ends_quietly(argv: list[str], code: int) -> None:
    """`cellctl ... | head` when head has already left: exit 141 as a shell reports SIGPIPE,
    nothing on stderr. The read end is closed before the child starts, so every write it makes
    fails: no race with the reader."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cellctl", *argv], stdout=write_end, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write_end)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr == b""
