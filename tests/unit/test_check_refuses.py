"""`cellctl check` refuses what `cellctl run` would refuse: both call the same preflight."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import structlog
import zmq
import zmq.auth
from onnx import TensorProto, helper

from cellctl.cli import main as cli
from cellctl.config import ConfigError, file_sha256, preflight, records_problem
from cellctl.drivers import DriverInitError
from cellctl.drivers.lighting import LightingSettings, strobe_max_pct
from cellctl.drivers.lighting.gardasoft import check_limits
from cellctl.inference import OnnxInferencer, verify_model
from cellctl.link.protocol import Part, Refusal, Rejected, decode_cell_bound


@pytest.fixture
def cell(profiles_copy: Path, tmp_path: Path) -> Path:
    """The sim cell as `cellctl run` accepts it: sim:// devices, records in tmp, the bridge's
    key pinned and the cell's certificate (cell.key_secret) beside the config."""
    path = profiles_copy / "cell-sim.yaml"
    text = path.read_text().replace("/var/lib/cellctl/records.db", str(tmp_path / "db" / "records.db"))
    text = text.replace('"emulator://scl?steps_per_rev=20000"', '"sim://"').replace(
        '"emulator://gardasoft"', '"sim://"'
    )
    text = text.replace("bridge_public_key: null", f'bridge_public_key: "{zmq.curve_keypair()[0].decode()}"')
    path.write_text(text)
    _, secret = zmq.auth.create_certificates(profiles_copy, "cell")
    Path(secret).chmod(0o600)
    preflight(path)  # the baseline passes
    return path


def _edit(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if new.splitlines()[0] in line)


def _refused(path: Path, field: str, says: str, line: int | None = None, *, allow_emulated: bool = False) -> None:
    with pytest.raises(ConfigError) as err:
        preflight(path, allow_emulated=allow_emulated)
    hits = [p for p in err.value.problems if p.field == field and says in p.message]
    assert hits, [str(p) for p in err.value.problems]
    if line is not None:
        assert hits[0].line == line


@pytest.mark.parametrize(
    ("old", "new", "device", "says"),
    [
        ('frame_camera: {url: "sim://"}', 'frame_camera: {url: "foo://x"}', "frame_camera", "unknown URL scheme 'foo'"),
        ('stage: {url: "sim://"', 'stage: {url: "serial:///dev/ttyS0?baud=1234"', "stage", "option baud='1234'"),
        (
            'lighting: {url: "sim://"}',
            'lighting: {url: "serial:///dev/ttyS0?colour=blue"}',
            "lighting",
            "unknown option 'colour'",
        ),
        ('line_camera: {url: "sim://"}', 'line_camera: {url: "sim://?seed=-4"}', "line_camera", "option seed='-4'"),
        ('line_camera: {url: "sim://"}', 'line_camera: {url: "sim://?time_scale=nan"}', "line_camera", "finite"),
        (
            'frame_camera: {url: "sim://"}',
            'frame_camera: {url: "gentl:///opt/none/x.cti?serial=1"}',
            "frame_camera",
            "GenTL producer /opt/none/x.cti does not exist",
        ),
        (
            'frame_camera: {url: "sim://"}',
            'frame_camera: {url: "gentl:///opt/x.cti"}',
            "frame_camera",
            "exactly one of serial",
        ),
    ],
)
def test_device_url_problems_name_the_line_of_the_url(cell, old, new, device, says):
    line = _edit(cell, old, new)
    _refused(cell, f"devices.{device}.url", says, line)


def test_check_accepts_the_sim_cell_but_run_refuses_its_emulator_devices(capsys):
    from tests.conftest import PROFILES

    assert cli(["check", str(PROFILES / "cell-sim.yaml")]) == 0
    assert "served by `cellctl sim` only" in capsys.readouterr().out
    _refused(PROFILES / "cell-sim.yaml", "devices.stage.url", "emulator:// is served by `cellctl sim` only")


def test_unknown_emulator_is_refused_even_for_sim(profiles_copy):
    path = profiles_copy / "cell-sim.yaml"
    line = _edit(path, '"emulator://gardasoft"', '"emulator://scl"')
    _refused(path, "devices.lighting.url", "no emulator", line, allow_emulated=True)


@pytest.mark.parametrize("where", ["/etc/hostname/x.db", "/proc/cellctl/records.db", "/proc/records.db"])
def test_records_db_that_cannot_be_created_is_refused(cell, where):
    line = _edit(cell, "records_db:", f"records_db: {where}  #")
    _refused(cell, "storage.records_db", "cannot", line)


def test_records_db_that_is_no_database_is_refused(cell, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not SQLite" * 100)
    _edit(cell, "records_db:", f"records_db: {junk}  #")
    _refused(cell, "storage.records_db", "cannot write")
    assert junk.read_bytes() == b"this is not SQLite" * 100  # untouched


def test_existing_database_is_checked_without_being_changed(tmp_path):
    db = tmp_path / "records.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x)")
        con.execute("INSERT INTO t VALUES (42)")
    before = db.read_bytes()
    assert records_problem(db) is None
    assert db.read_bytes() == before
    assert records_problem(tmp_path) is not None  # a directory
    assert records_problem(tmp_path / "new" / "deeper" / "r.db") is None
    assert not (tmp_path / "new").exists()  # checking creates nothing


def _model(
    path: Path,
    input_name="image",
    output_name="defect_prob",
    size=224,
    out_rank=1,
    dtype=TensorProto.FLOAT,
    guard=True,
    threshold="10.0",
) -> Path:
    """A tiny real ONNX model: global average pool -> one number per image, and the same
    number as its ``ood_score`` with a threshold in the metadata (a guard, as `cellctl guard`
    writes one)."""
    x = helper.make_tensor_value_info(input_name, dtype, ["n", 3, size, size])
    out_shape = ["n"] if out_rank == 1 else ["n", 1]
    y = helper.make_tensor_value_info(output_name, dtype, out_shape)
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Identity", ["m"], [output_name])
        if out_rank == 1
        else helper.make_node("Unsqueeze", ["m", "ax"], [output_name]),
    ]
    outputs = [y]
    if guard:
        nodes.append(helper.make_node("Identity", ["m"], ["ood_score"]))
        outputs.append(helper.make_tensor_value_info("ood_score", dtype, ["n"]))
    inits = [] if out_rank == 1 else [helper.make_tensor("ax", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "g", [x], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if guard and threshold is not None:
        model.metadata_props.add(key="cellctl.ood.threshold", value=threshold)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"input_name": "pixels"}, "expected exactly ['image']"),
        ({"output_name": "score"}, "no output 'defect_prob'"),
        ({"size": 128}, "expected ['N', 3, 224, 224]"),
        ({"out_rank": 2}, "expected [N]"),
        ({"dtype": TensorProto.DOUBLE}, "tensor(double)"),
        ({"guard": False}, "no output 'ood_score': the model has no out-of-distribution guard"),
        ({"threshold": None}, "no 'cellctl.ood.threshold'"),
        ({"threshold": "nan"}, "expected a finite number > 0"),
    ],
)
def test_model_with_the_wrong_interface_is_refused_by_check_and_by_the_inferencer(
    profiles_copy, tmp_path, kwargs, says, capsys
):
    model = _model(profiles_copy / "models" / "odd.onnx", **kwargs)
    assert not verify_model(_model(tmp_path / "good.onnx"), 224)  # the helper itself makes good models
    profile = profiles_copy / "m8x40-hex.yaml"
    text = profile.read_text()
    text = text.replace("models/student-int8.onnx", "models/odd.onnx")
    text = text.replace(text.split('sha256: "')[1].split('"')[0], file_sha256(model))
    profile.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "odd.onnx" in t)
    assert cli(["check", str(profile)]) == 1
    err = capsys.readouterr().err
    assert f"{profile}:{line}: model.path: odd.onnx:" in err and says in err
    with pytest.raises(DriverInitError, match="refusing to run it"):
        OnnxInferencer(model, file_sha256(model), 1, input_size_px=224)


def test_file_that_is_no_model_is_refused(profiles_copy, capsys):
    model = profiles_copy / "models" / "student-int8.onnx"
    model.write_bytes(b"\x08\x07garbage" * 64)
    profile = profiles_copy / "m8x40-hex.yaml"
    text = profile.read_text()
    profile.write_text(text.replace(text.split('sha256: "')[1].split('"')[0], file_sha256(model)))
    assert cli(["check", str(profile)]) == 1
    assert "onnxruntime cannot load it" in capsys.readouterr().err


def test_strobe_beyond_the_overdrive_table_is_refused_everywhere(profiles_copy, capsys):
    profile = profiles_copy / "m8x40-hex.yaml"
    line = _edit(
        profile, "  mode: continuous\n  intensity_pct: 80", "  mode: strobe\n  intensity_pct: 150\n  pulse_width_ms: 60"
    )
    assert cli(["check", str(profile)]) == 1
    err = capsys.readouterr().err
    assert f"{profile}:" in err and "lighting:" in err and "at most 50 ms" in err
    assert line  # the edit is in the file
    # the same table in the driver and the emulator
    settings = LightingSettings.model_construct(mode="strobe", intensity_pct=150.0, pulse_width_ms=60.0, channel=1)
    with pytest.raises(DriverInitError, match="at most 50 ms"):
        check_limits(settings)
    assert strobe_max_pct(60.0) == 100.0 and strobe_max_pct(50.0) == 200.0 and strobe_max_pct(10.0) == 300.0
    LightingSettings(mode="strobe", intensity_pct=150.0, pulse_width_ms=50.0)  # on the limit: fine


@pytest.mark.parametrize("content", [b"part_number: caf\xe9\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_stray_non_utf8_yaml_in_profiles_dir_is_one_problem(cell, content, capsys):
    stray = cell.parent / "stray.yaml"
    stray.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        preflight(cell)
    (problem,) = err.value.problems
    assert problem.file == str(stray) and "not UTF-8" in problem.message
    assert cli(["check", str(cell)]) == 1
    assert capsys.readouterr().err.count("error:") == 1


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("part_number: HX-M8x40-8.8", 'part_number: "HX\\u202EM8"', "part_number"),
        ("part_number: HX-M8x40-8.8", 'part_number: "HX\\x1b[31m"', "part_number"),
        ("part_number: HX-M8x40-8.8", "part_number: " + "X" * 65, "part_number"),
        ("description: Hex", 'description: "Hex\\nPASS"  #', "description"),
    ],
)
def test_strings_that_travel_refuse_control_and_bidi_characters(profiles_copy, old, new, field, capsys):
    profile = profiles_copy / "m8x40-hex.yaml"
    line = _edit(profile, old, new)
    assert cli(["check", str(profile)]) == 1
    err = capsys.readouterr().err
    assert f"{profile}:{line}: {field}:" in err and len(err.strip().splitlines()) == 1


def test_profile_file_name_is_a_profile_name(cell, capsys):
    bad = cell.parent / "m8\u202ex.yaml"
    bad.write_text((cell.parent / "m8x40-hex.yaml").read_text())
    assert cli(["check", str(cell)]) == 1
    assert "profile name (the file name) bidi control U+202E" in capsys.readouterr().err


def test_part_message_refuses_unsafe_part_ids_and_profiles():
    head = b'{"v": 2, "type": "part", "request_id": "r1", '
    ok = decode_cell_bound([head + b'"part_id": "P-0001", "profile": "m8x40-hex"}'])
    assert isinstance(ok, Part) and ok.part_id == "P-0001"
    for bad in (
        b'"part_id": "P\\u202e1"}',
        b'"part_id": "P\\u0007"}',
        b'"part_id": "' + b"x" * 65 + b'"}',
        b'"part_id": "P1", "profile": "a\\u2066b"}',
    ):
        refused = decode_cell_bound([head + bad])
        assert isinstance(refused, Rejected) and refused.reason is Refusal.MALFORMED


def _cert(folder: Path, name: str) -> Path:
    _, secret = zmq.auth.create_certificates(folder, name)
    Path(secret).chmod(0o600)
    return Path(secret)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("bridge_public_key: ", "bridge_public_key: null  #", "required with security: curve"),
        ("bridge_public_key: ", 'bridge_public_key: "abc"  #', "40 characters, this one 3"),
        ("bridge_public_key: ", 'bridge_public_key: "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%"  #', "overflows"),
        ("bridge_public_key: ", 'bridge_public_key: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa~"  #', "not Z85"),
    ],
    ids=["missing", "short", "overflow", "alphabet"],
)
def test_curve_without_a_valid_pinned_bridge_key_is_refused(cell, old, new, says):
    line = _edit(cell, old, new)
    _refused(cell, "robot.bridge_public_key", says, line)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        ("missing", "does not exist (make one with `cellctl keys generate`)"),
        ("public-only", "holds no secret key"),
        ("garbage", "is not a ZeroMQ certificate"),
        ("mismatched", "does not belong to the public key"),
        ("directory", "is not a file"),
    ],
)
def test_a_secret_key_file_that_is_no_usable_certificate_is_refused(cell, make, says):
    secret = cell.parent / "cell.key_secret"
    if make == "missing":
        secret.unlink()
    elif make == "public-only":
        secret.write_text((cell.parent / "cell.key").read_text())
    elif make == "garbage":
        secret.write_bytes(b"\x89PNG\r\n\x1a\n" * 10)
    elif make == "mismatched":
        own = zmq.auth.load_certificate(secret)[1]
        assert own is not None
        secret.write_text(secret.read_text().replace(own.decode(), zmq.curve_keypair()[1].decode()))
    else:
        secret.unlink()
        secret.mkdir()
    line = _edit(cell, "secret_key_file: cell.key_secret", "secret_key_file: cell.key_secret")
    _refused(cell, "robot.secret_key_file", says, line)


def test_the_secret_key_file_is_looked_up_in_the_credentials_directory_first(cell, tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (cell.parent / "cell.key_secret").unlink()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    _refused(cell, "robot.secret_key_file", "does not exist")
    _cert(credentials, "cell")
    preflight(cell)  # LoadCredential= handed it over: found there


def test_a_secret_key_readable_by_others_passes_with_a_warning(cell, capsys):
    (cell.parent / "cell.key_secret").chmod(0o640)
    with structlog.testing.capture_logs() as logs:
        preflight(cell)
    (warning,) = [e for e in logs if e["event"] == "robot_link.secret_key_exposed"]
    assert warning["log_level"] == "warning" and "chmod 600" in warning["why"]


def test_security_none_needs_no_keys_and_the_sim_cell_brings_its_own(cell):
    (cell.parent / "cell.key_secret").unlink()
    _edit(cell, "security: curve", "security: none")
    preflight(cell)
    from tests.conftest import PROFILES

    # the shipped sim cell pins no key and ships no certificate: `cellctl sim` makes both per run
    preflight(PROFILES / "cell-sim.yaml", allow_emulated=True)


def test_run_uses_the_same_preflight(cell, tmp_path):
    import asyncio
    import sys

    _edit(cell, 'stage: {url: "sim://"', 'stage: {url: "serial:///dev/ttyS0?baud=1234"')

    async def run() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cellctl", "run", "--config", str(cell), stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, err.decode()

    code, err = asyncio.run(run())
    assert code == 2 and "devices.stage.url: stage 'serial:///dev/ttyS0?baud=1234'" in err


# ------------------------------------------------------------------ audit: paths the OS refuses,
# records `run` would refuse, socket ports; checked as real `cellctl check` processes
def _check(*files: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`cellctl check FILES` as a process; a hang fails by the generous timeout."""
    return subprocess.run(
        [sys.executable, "-m", "cellctl", "check", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _refused_line(run: subprocess.CompletedProcess[str], *says: str) -> str:
    assert run.returncode == 1, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for words in says:
        assert words in lines[0], lines[0]
    return lines[0]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _loop(folder: Path) -> Path:
    """Two symbolic links naming each other; the first is returned."""
    (folder / "l1").symlink_to(folder / "l2")
    (folder / "l2").symlink_to(folder / "l1")
    return folder / "l1"


def test_a_looping_link_in_profiles_dir_is_named(cell: Path) -> None:
    (cell.parent / "loop.yaml").symlink_to("loop.yaml")
    _refused_line(_check(cell), f"{cell.parent / 'loop.yaml'}: cannot read: Too many levels of symbolic links")


@pytest.mark.parametrize(
    ("field", "old"),
    [
        ("storage.records_db", "records_db: "),
        ("profiles_dir", "profiles_dir: ."),
        ("storage.captures.dir", None),
    ],
)
def test_a_looping_link_as_a_config_path_is_named_with_its_line(
    cell: Path, tmp_path: Path, field: str, old: str | None
) -> None:
    loop = _loop(tmp_path)
    text = cell.read_text()
    if old is None:
        text = text.replace("storage:\n", f"storage:\n  captures: {{dir: {loop}}}\n", 1)
        marker = "captures:"
    elif field == "profiles_dir":
        text = text.replace("profiles_dir: .", f"profiles_dir: {loop}", 1)
        marker = "profiles_dir:"
    else:
        line = next(x for x in text.splitlines() if old in x)
        text = text.replace(line, f"  records_db: {loop}", 1)
        marker = "records_db:"
    cell.write_text(text)
    line = _line_of(cell, marker)
    _refused_line(_check(cell), f"{cell}:{line}: {field}: cannot use {loop}: Too many levels of symbolic links")
    # `run` refuses the same with exit 2, and `verdict --config` names the records_db so too
    run = subprocess.run(
        [sys.executable, "-m", "cellctl", "run", "--config", str(cell)], capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 2 and f"{field}: cannot use {loop}" in run.stderr, run.stderr
    if field == "storage.records_db":
        run = subprocess.run(
            [sys.executable, "-m", "cellctl", "verdict", "--config", str(cell)],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert f"{cell}:{line}: storage.records_db: cannot use {loop}" in run.stderr, run.stderr


@pytest.mark.parametrize(("field", "marker"), [("profiles_dir", "profiles_dir:"), ("storage.captures.dir", None)])
def test_a_path_name_too_long_is_named_with_its_line(
    cell: Path, tmp_path: Path, field: str, marker: str | None
) -> None:
    long = tmp_path / ("a" * 300)
    text = cell.read_text()
    if marker is None:
        text = text.replace("storage:\n", f"storage:\n  captures: {{dir: {long}}}\n", 1)
        marker = "captures:"
    else:
        text = text.replace("profiles_dir: .", f"profiles_dir: {long}", 1)
    cell.write_text(text)
    _refused_line(_check(cell), f"{cell}:{_line_of(cell, marker)}: {field}: ", "File name too long")


def test_a_fifo_in_profiles_dir_is_refused_not_waited_on(cell: Path) -> None:
    os.mkfifo(cell.parent / "zz.yaml")
    _refused_line(_check(cell, timeout=120), f"{cell.parent / 'zz.yaml'}: not a regular file: a FIFO")


@pytest.mark.parametrize(("content", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a single value")])
def test_yaml_in_profiles_dir_that_is_no_mapping_is_named(cell: Path, content: str, kind: str) -> None:
    (cell.parent / "other.yaml").write_text(content)
    _refused_line(_check(cell), f"{cell.parent / 'other.yaml'}:1: holds {kind}")


def test_a_model_path_that_loops_is_named_with_its_line(profiles_copy: Path) -> None:
    profile = profiles_copy / "m8x40-hex.yaml"
    _loop(profiles_copy / "models")
    text = profile.read_text()
    old = next(x for x in text.splitlines() if x.strip().startswith("path:"))
    profile.write_text(text.replace(old, "  path: models/l1", 1))
    line = _line_of(profile, "path: models/l1")
    _refused_line(_check(profile), f"{profile}:{line}: model.path: cannot read", "Too many levels of symbolic links")


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ("PRAGMA user_version = 99", "schema version 99 is newer than this cellctl's version"),
        ("CREATE TABLE inspections (a)", "not a cellctl records schema"),
        (
            "PRAGMA user_version = 4; CREATE TABLE inspections (a); CREATE TABLE accepted (b)",
            "table inspections is not the records' (no column seq, cell_id, part_id and 18 more)",
        ),
    ],
)
def test_check_refuses_records_run_would_refuse(cell: Path, tmp_path: Path, setup: str, says: str) -> None:
    db_path = tmp_path / "db" / "records.db"
    db_path.parent.mkdir(exist_ok=True)
    db = sqlite3.connect(db_path)
    db.executescript(setup)
    db.close()
    before = db_path.read_bytes()
    line = _line_of(cell, "records_db:")
    _refused_line(_check(cell), f"{cell}:{line}: storage.records_db: {db_path}: {says}")
    assert db_path.read_bytes() == before  # checked read-only
    run = subprocess.run(
        [sys.executable, "-m", "cellctl", "run", "--config", str(cell)], capture_output=True, text=True, timeout=240
    )
    assert run.returncode in (2, 3) and "Traceback" not in run.stderr, run.stderr


def test_records_of_the_current_schema_pass(cell: Path, tmp_path: Path) -> None:
    from cellctl.records import SCHEMA_VERSION, schema_problem
    from cellctl.records._migrations import migrate

    db_path = tmp_path / "db" / "records.db"
    db_path.parent.mkdir(exist_ok=True)
    db = sqlite3.connect(db_path, isolation_level=None)
    migrate(db, str(db_path))
    assert schema_problem(db) is None
    db.execute("CREATE TABLE notes (x)")  # a table of someone's own beside the records
    db.close()
    assert records_problem(db_path) is None
    assert SCHEMA_VERSION >= 4


@pytest.mark.parametrize(("url", "port"), [("socket://host:99999", "99999"), ("socket://host:abc", "abc")])
def test_a_socket_port_out_of_range_is_named_with_the_url_line(cell: Path, url: str, port: str) -> None:
    line = _edit(cell, 'lighting: {url: "sim://"}', f'lighting: {{url: "{url}"}}')
    _refused_line(_check(cell), f"{cell}:{line}: devices.lighting.url:", f"port '{port}' must be a number in 1-65535")
