"""Mutation fuzzing of the YAML loader through `cellctl check`: whatever a file holds, the
answer is `ok` or one `error: file[:line]: ...` line per problem, never a traceback.

The shipped cell config and profiles are mutated by byte flips, insertions and value
replacements with the constructs that crashed `check` before (non-UTF-8 bytes, control and
bidi characters, deep nesting, merge keys, alias bombs, huge numbers, booleans where numbers
belong, duplicate keys, long paths). Deterministic (derandomize), 1,100 examples in all.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellctl.cli import main as cli
from tests.conftest import PROFILES

FILES = ["cell-sim.yaml", "m8x40-hex.yaml", "m12x80-hex.yaml"]
ERROR_LINE = re.compile(r"^error: [^\n]+?(:\d+)?: \S.*$")

NASTY_BYTES = [
    b"\x00",
    b"\xe9",
    b"\xff\xfe",
    b"\x1b[31m",
    "\u202e".encode(),
    b"\t",
    b"\r",
    b"\x85",
    b"\xef\xbb\xbf",
    b"\x7f",
    b"\xc3",
    b"\\",
    b'"',
    b"'",
    b"&",
    b"*",
    b"!",
    b"%",
    b"@",
    b"`",
    b"|",
    b">",
    b"{",
    b"[",
    b"?",
]
NASTY_VALUES = [
    "true",
    "yes",
    "on",
    "null",
    "~",
    "1e999",
    "-1e999",
    ".inf",
    ".nan",
    "1" * 400,
    "-" + "9" * 40,
    "0x7fffffffffffffff",
    "0o777",
    "1_000",
    "2024-01-01",
    '"\\u202eevil"',
    '"\\x1b[2J"',
    '"a\\nb"',
    '"\\0"',
    "'" + "a" * 5000 + "'",
    "/" + "a/" * 3000 + "x.onnx",
    "[" * 300 + "]" * 300,
    "{a: " * 100 + "1" + "}" * 100,
    "*undefined",
    "&a 1",
    "!!binary aGVsbG8=",
    "!!python/object/apply:os.system [ls]",
    "!custom 1",
    "[1, 2]",
    "{}",
    "|\n  text",
    "? complex",
    "'unterminated",
    "@reserved",
    "`tick",
    "%percent",
    "1:2:3",
    "-.5",
    "+12",
    "0b101",
]
NASTY_LINES = [
    "<<: {part_number: merged}",
    "<<: *nope",
    "<<: 5",
    "<<: [1, 2]",
    "<<: {devices: {stage: {url: 'sim://'}}}",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]",
    "r: &r [*r]",
    "part_number: dup",
    "cell_id: dup",
    "model: {path: x.onnx, sha256: 'ab'}",
    "- list",
    "---",
    "--- \n- a",
    "%YAML 1.1",
    "%TAG ! tag:x,2000:",
    "...",
    "? [a, b]\n: c",
    "x: " + "[" * 1000,
    "deep: " + "{a: " * 60 + "1" + "}" * 60,
    "devices: [1, 2]",
    "preprocess: 5",
    "geometry: ~",
    "\t: tab",
    "key\u202e: v",
    "k\x85: v",
    "big: " + "9" * 5000,
    "s: !!set {a, b}",
    "o: !!omap [a: 1]",
    "t: !!timestamp 2001-12-14",
    "\ufeffbom: 1",
    "x: |-\n  \u2028line",
]


# nine aliases of nine aliases ... five levels: 59,049 values from 60 lines of YAML
BOMB = b"l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"l%d: &l%d [%s]\n" % (i, i, b", ".join([b"*l%d" % (i - 1)] * 9)) for i in range(1, 6)
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("fuzz") / "profiles"
    shutil.copytree(PROFILES, dest, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    # `cellctl check` of the cell checks records_db only for run-able cells; keep it in tmp anyway
    cell = dest / "cell-sim.yaml"
    cell.write_text(cell.read_text().replace("/var/lib/cellctl/records.db", str(dest / "records.db")))
    return dest


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(FILES))
    data = (PROFILES / name).read_bytes()
    if name == "cell-sim.yaml":
        data = data.replace(b"/var/lib/cellctl/records.db", b"records.db")
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "insert_bytes", "value", "line", "truncate", "duplicate", "drop"]))
        lines = data.split(b"\n")
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if kind == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data = data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1 :]
        elif kind == "insert_bytes":
            pos = draw(st.integers(0, len(data)))
            data = data[:pos] + draw(st.sampled_from(NASTY_BYTES)) + data[pos:]
        elif kind == "value" and b":" in lines[i]:
            key = lines[i].split(b":", 1)[0]
            lines[i] = key + b": " + draw(st.sampled_from(NASTY_VALUES)).encode()
            data = b"\n".join(lines)
        elif kind == "line":
            indent = draw(st.sampled_from([b"", b"  ", b"    "]))
            lines.insert(i, indent + draw(st.sampled_from(NASTY_LINES)).encode())
            data = b"\n".join(lines)
        elif kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
            data = b"\n".join(lines)
        elif kind == "drop" and lines:
            del lines[i]
            data = b"\n".join(lines)
    return name, data


def _check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli(["check", str(path)])
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), out.getvalue(), err.getvalue()


def _assert_clean(code: int, out: str, err: str, path: Path) -> None:
    assert "Traceback" not in out + err
    assert code in (0, 1, 2), err
    if code == 0:
        assert out.startswith(f"ok: {path}") and not err
        return
    lines = err.splitlines()
    assert lines, "a refusal must say why"
    for line in lines:
        assert ERROR_LINE.match(line), line
        assert "internal error" not in line, line


@settings(
    max_examples=900,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(case=mutated())
def test_mutated_shipped_files_never_crash_check(workdir, case):
    name, data = case
    path = workdir / name
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        _assert_clean(*_check(path), path)
    finally:
        path.write_bytes(original)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_check(workdir, data):
    path = workdir / "random.yml"  # .yml: not picked up by the cell's profile folder
    path.write_bytes(data)
    _assert_clean(*_check(path), path)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty file"),
        (b"- a\n- b\n", "expected a mapping of fields at the top level, got a list"),
        (b"a: &a [*a]\n", "a: unknown field"),  # ruamel cuts the cycle (None)
        (BOMB, "more than 20000 values"),
        (b"x: 1e999\n", "inf is not a usable number"),
        (b"x: " + b"9" * 400 + b"\n", "too large"),
        (b"k: 1\nk: 2\n", "duplicate key"),
        (b"caf\xe9: 1\n", "not UTF-8"),
        (b"x: " + b"[" * 2000 + b"\n", "nested deeper"),
    ],
)
def test_hostile_documents_give_one_clear_problem(tmp_path, content, says, capsys):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    assert cli(["check", str(path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert ERROR_LINE.match(line) and says in line, line


def test_profile_missing_part_number_says_so(profiles_copy, capsys):
    path = profiles_copy / "m8x40-hex.yaml"
    path.write_text("\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("part_number:")))
    assert cli(["check", str(path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"error: {re.escape(str(path))}:\d+: part_number: required field is missing", line), line


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  exposure_us: 8000", "  exposure_us: true"),
        ("  threshold: 0.5", "  threshold: yes"),
        ("  rows: 4", "  rows: &r true"),
    ],
)
def test_boolean_is_not_a_number(profiles_copy, old, new, capsys):
    path = profiles_copy / "m8x40-hex.yaml"
    text = path.read_text()
    assert old in text or old == "  rows: 4"
    path.write_text(
        text.replace(old, new).replace(
            "shank_tile_px: {axis: 680, around: 512}", "shank_tile_px:\n    axis: &r true\n    around: 512"
        )
    )
    assert cli(["check", str(path)]) == 1
    assert "valid" in capsys.readouterr().err
