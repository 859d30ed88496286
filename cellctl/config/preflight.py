"""Preflight: everything `cellctl run` would refuse or fail on at start, found before it starts.

One function for `cellctl check CELL.yaml` and `cellctl run`, so the two cannot drift apart.
It validates the cell config and every profile (shapes and ranges), then what validators may
not do because it needs I/O: each device URL's scheme and options against the backend's own
options model, each ``.cti`` file, each model file loaded with onnxruntime and its inputs and
outputs, the records database's folder, and the robot link's keys. Every problem names file,
line and field.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cellctl.config.cell import CellConfig
from cellctl.config.loader import ConfigError, Problem, line_of, read_yaml, validate
from cellctl.config.resolve import ResolvedProfile, cell_relative, load_profiles
from cellctl.drivers import CellError, DeviceUrl
from cellctl.drivers.camera import FRAME_CAMERAS, LINE_CAMERAS
from cellctl.drivers.lighting import LIGHTS
from cellctl.drivers.registry import BackendRegistry
from cellctl.drivers.stage import STAGES
from cellctl.files import regular_file_problem
from cellctl.link.keys import KeyFileError, read_certificate, secret_key_path, warn_if_exposed
from cellctl.records import schema_problem

DEVICE_REGISTRIES: dict[str, BackendRegistry] = {
    "frame_camera": FRAME_CAMERAS,
    "line_camera": LINE_CAMERAS,
    "stage": STAGES,
    "lighting": LIGHTS,
}
EMULATOR = "emulator"
# emulator://<name> per device (served by `cellctl sim`, sim/emulated.py); its options are
# handed to the serial backend on the emulator's pty, so that backend's model checks them
EMULATED = {"stage": "scl", "lighting": "gardasoft"}
SERVED_BY_SIM = (
    "emulator:// is served by `cellctl sim` only; for `cellctl run` start "
    "`python -m cellctl.sim.scl_drive` / `python -m cellctl.sim.gardasoft` and use "
    "serial://<the printed pty path>"
)


def preflight(config_path: Path, *, allow_emulated: bool = False) -> tuple[CellConfig, dict[str, ResolvedProfile]]:
    """The validated cell config and its resolved profiles, or ConfigError with every problem.

    ``allow_emulated``: accept ``emulator://`` devices (`cellctl check` and `cellctl sim`);
    `cellctl run` cannot serve them. A config with emulator devices is run only by
    `cellctl sim`, which keeps its own records and makes its own link keys per run, so its
    ``records_db`` and keys are not checked.
    """
    data = read_yaml(config_path)
    cell = validate(CellConfig, data, config_path)
    problems = verify_devices(config_path, data, cell, allow_emulated=allow_emulated)
    if not emulated_devices(cell):
        problems += verify_records(config_path, data, cell)
        problems += verify_captures(config_path, data, cell)
        problems += verify_link_keys(config_path, data, cell)
    profiles: dict[str, ResolvedProfile] = {}
    try:
        profiles = load_profiles(config_path, cell)
    except ConfigError as exc:
        problems += exc.problems
    problems += verify_models(profiles.values())
    if problems:
        raise ConfigError(problems)
    return cell, profiles


def emulated_devices(cell: CellConfig) -> list[str]:
    """The devices of ``cell`` that name an ``emulator://`` URL."""
    return [name for name in DEVICE_REGISTRIES if _scheme(getattr(cell.devices, name).url) == EMULATOR]


def _scheme(raw: str) -> str:
    try:
        return DeviceUrl.parse(raw).scheme
    except ValueError:
        return ""


def verify_devices(path: Path, data: Any, cell: CellConfig, *, allow_emulated: bool) -> list[Problem]:
    """Each device URL: known scheme, options valid for its backend, producer files present."""
    problems = []
    for name, registry in DEVICE_REGISTRIES.items():
        field = f"devices.{name}.url"
        message = _device_problem(name, registry, getattr(cell.devices, name).url, allow_emulated)
        if message is not None:
            problems.append(Problem(str(path), line_of(data, field), field, message))
    return problems


def _device_problem(name: str, registry: BackendRegistry, raw: str, allow_emulated: bool) -> str | None:
    try:
        url = DeviceUrl.parse(raw)
        if url.scheme == EMULATOR:
            if not allow_emulated:
                return SERVED_BY_SIM
            if EMULATED.get(name) != url.location:
                known = ", ".join(f"{d}: emulator://{e}" for d, e in EMULATED.items())
                return f"no emulator {raw!r} for {name} (have: {known})"
            registry.verify(f"serial:///dev/null?{raw.partition('?')[2]}")
            return None
        registry.verify(raw)
    except (ValueError, CellError) as exc:
        return str(exc)
    if url.scheme == "gentl":
        cti = Path(url.location)
        try:
            if not cti.is_file():
                return f"GenTL producer {cti} does not exist (install the camera vendor's SDK or fix the path)"
        except OSError as exc:
            return f"GenTL producer {cti}: {exc.strerror or exc}"
    return None


def verify_records(path: Path, data: Any, cell: CellConfig) -> list[Problem]:
    """The records database can be created and written, and is one this cellctl opens (the
    daemon opens it at start)."""
    try:
        db = cell_relative(path, cell.storage.records_db, "storage.records_db")
    except ConfigError as exc:  # a loop of links
        return exc.problems
    message = records_problem(db)
    if message is None:
        return []
    return [Problem(str(path), line_of(data, "storage.records_db"), "storage.records_db", message)]


def records_problem(db: Path) -> str | None:
    """Why SQLite could not create or write ``db``, or the records could not open it (None if
    they can), leaving no trace.

    An existing database must be a regular file; its schema is checked as the records check
    it when they open it (a newer version, tables that are not the records'), read only, and
    a write transaction begun and rolled back; else a scratch file is made in the nearest
    existing folder (the daemon creates the missing ones).
    """
    try:
        if db.is_dir():
            return f"{db} is a directory, not a database file"
        if db.exists():
            kind = regular_file_problem(db)  # a FIFO would block SQLite's open
            return f"{db}: {kind}" if kind is not None else _sqlite_writable(db)
        if db.is_symlink():
            return f"{db} is a symbolic link to a missing file"
    except OSError as exc:
        return f"cannot create {db}: {exc.strerror or exc}"
    return folder_problem(db.parent, db)


def folder_problem(folder: Path, what: Path) -> str | None:
    """Why ``what`` in ``folder`` could not be created (None if it can): a scratch file is made
    and removed in ``folder``, or in its nearest existing parent (the daemon creates the rest)."""
    try:
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            return f"cannot create {what}: {folder} is a file, not a folder"
        fd, scratch = tempfile.mkstemp(prefix=".cellctl-check-", dir=folder)
        os.close(fd)
        os.unlink(scratch)
    except OSError as exc:
        return f"cannot create {what}: {exc.strerror or exc}"
    return None


def verify_captures(path: Path, data: Any, cell: CellConfig) -> list[Problem]:
    """With ``storage.captures``: its folder can be created and written (the daemon opens it
    at start and refuses to start without it)."""
    if cell.storage.captures is None:
        return []
    try:
        folder = cell_relative(path, cell.storage.captures.dir, "storage.captures.dir")
    except ConfigError as exc:  # a loop of links
        return exc.problems
    try:
        is_file = folder.exists() and not folder.is_dir()
    except OSError as exc:  # a name too long
        message: str | None = f"cannot create {folder}: {exc.strerror or exc}"
    else:
        message = f"{folder} is a file, not a folder" if is_file else folder_problem(folder, folder)
    if message is None:
        return []
    return [Problem(str(path), line_of(data, "storage.captures.dir"), "storage.captures.dir", message)]


def _sqlite_writable(db: Path) -> str | None:
    try:
        con = sqlite3.connect(f"{db.absolute().as_uri()}?mode=rw", uri=True, timeout=1.0, isolation_level=None)
    except sqlite3.Error as exc:
        return f"cannot open {db}: {exc}"
    try:
        schema = schema_problem(con)  # read only: what Records.open would refuse
        if schema is not None:
            return f"{db}: {schema}"
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return None  # a running daemon holds it: it is writable, by that daemon
        return f"cannot write {db}: {exc}"
    except sqlite3.Error as exc:
        return f"cannot write {db}: {exc}"
    finally:
        con.close()
    return None


def verify_link_keys(path: Path, data: Any, cell: CellConfig) -> list[Problem]:
    """With ``security: curve``: the bridge's key is pinned, and the cell's certificate (where
    the daemon will look, ``$CREDENTIALS_DIRECTORY`` first) is readable and holds a secret key
    that belongs to its public key. A secret readable by group or others is a warning."""
    robot = cell.robot
    if robot.security != "curve":
        return []
    problems = []
    if robot.bridge_public_key is None:
        field = "robot.bridge_public_key"
        message = "required with security: curve (the bridge's public key: `cellctl keys show BRIDGE.key`)"
        problems.append(Problem(str(path), line_of(data, field), field, message))
    key_file = secret_key_path(robot.secret_key_file, path)
    try:
        read_certificate(key_file, need_secret=True)
    except KeyFileError as exc:
        field = "robot.secret_key_file"
        problems.append(Problem(str(path), line_of(data, field), field, str(exc)))
    else:
        warn_if_exposed(key_file)
    return problems


def verify_models(profiles: Iterable[ResolvedProfile]) -> list[Problem]:
    """Each distinct model file loaded once with onnxruntime, its interface checked against
    each profile's input size."""
    problems = []
    for rp in profiles:
        try:
            stat = rp.model_path.stat()
        except OSError:
            continue  # resolve_profile has named the missing file
        size = rp.profile.preprocess.input_size_px
        for message in _model_problems(rp.model_path, stat.st_mtime_ns, stat.st_size, size):
            data = read_yaml(rp.path)
            problems.append(
                Problem(str(rp.path), line_of(data, "model.path"), "model.path", f"{rp.model_path.name}: {message}")
            )
    return problems


@functools.lru_cache(maxsize=16)
def _model_problems(path: Path, mtime_ns: int, size: int, input_size_px: int) -> tuple[str, ...]:
    # keyed by content version: profiles share model files, `check a.yaml b.yaml` loads once
    from cellctl.inference import verify_model  # onnxruntime only for the commands that need it

    return tuple(verify_model(path, input_size_px))
