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


# ------------------------------------------------------------------ audit: values out of range,
# files that are no regular file, records files `run` would refuse; all as real processes
def _cellctl(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`cellctl ARGV` as a process; a hang fails by the generous timeout, never passes."""
    return subprocess.run(
        [sys.executable, "-m", "cellctl", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _one_error_line(run: subprocess.CompletedProcess[str], code: int, *says: str) -> str:
    assert run.returncode == code, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, run.stderr
    for words in says:
        assert words in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("since", ["800000d", "99999999999d", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00+01:00"])
def test_a_since_beyond_the_calendar_is_a_usage_error(since: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    run = _cellctl("captures", "export", str(tmp_path / "out"), "--store", str(store), "--since", since)
    _one_error_line(run, USAGE, "argument --since: out of range", repr(since))


def test_a_seq_beyond_sqlite_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    db.write_bytes(b"")
    run = _cellctl("verdict", "--records", str(db), "--seq", "99999999999999999999999")
    _one_error_line(run, USAGE, "argument --seq: must be at most 9223372036854775807")
    run = _cellctl("verdict", "--records", str(db), "--seq", str(2**63 - 1))  # the largest one is asked for
    assert run.returncode != USAGE or "--seq" not in run.stderr, run.stderr


def test_a_part_id_is_escaped_once(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "r.db"
    sqlite3.connect(db).execute("CREATE TABLE inspections (seq INTEGER PRIMARY KEY, part_id TEXT)").connection.close()
    line = _one_error_line(_cellctl("verdict", "--records", str(db), "--part", "a\x1b"), 1)
    assert "part 'a\\x1b'" in line, line  # the escape shown as typed, not doubled to a\\\\x1b


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    return path


def test_a_fifo_to_check_is_refused_not_waited_on(fifo: Path) -> None:
    run = _cellctl("check", str(fifo), timeout=120)
    _one_error_line(run, 1, f"{fifo}: not a regular file: a FIFO")


def test_a_fifo_as_sim_records_is_refused_before_work(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    run = _cellctl("sim", "--parts", "1", "--records", str(fifo), timeout=120)
    _one_error_line(run, USAGE, "--records", "not a regular file: a FIFO")


def _records_file(tmp_path: Path, kind: str) -> Path:
    import sqlite3

    path = tmp_path / f"{kind}.db"
    if kind == "text":
        path.write_text("not a database\n" * 100)
        return path
    db = sqlite3.connect(path)
    if kind == "future":
        db.execute("PRAGMA user_version = 99")
    else:  # a table of that name that is not the records'
        db.execute("CREATE TABLE inspections (a)")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("text", "file is not a database"),
        ("future", "schema version 99 is newer than this cellctl's version"),
        ("wrongschema", "not a cellctl records schema"),
    ],
)
def test_sim_refuses_records_the_records_would_refuse_before_it_starts(tmp_path: Path, kind: str, says: str) -> None:
    path = _records_file(tmp_path, kind)
    before = path.read_bytes()
    run = _cellctl("sim", "--parts", "1", "--records", str(path))
    _one_error_line(run, USAGE, "argument --records", says)
    assert "interrupted" not in run.stdout + run.stderr
    assert path.read_bytes() == before  # looked at, never written


@pytest.mark.parametrize("content", [b"", b"this is not a GenTL producer\n"])
def test_devices_cti_that_loads_no_producer_is_an_error(tmp_path: Path, content: bytes) -> None:
    cti = tmp_path / "vendor.cti"
    cti.write_bytes(content)
    run = _cellctl("devices", "--cti", str(cti))
    _one_error_line(run, USAGE, str(cti), "loaded no GenTL producer")
    assert "producer" not in run.stdout, run.stdout
