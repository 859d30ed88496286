"""Resolving validated configs: merging, derived values and file checks (the I/O step).

Validators only check shapes and ranges; everything that reads other files or combines the
cell config with a profile happens here, once, at load time.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellctl.config.cell import CellConfig
from cellctl.config.loader import ConfigError, Problem, line_of, load, read_yaml, validate
from cellctl.config.package_card import CardError, read_package_card
from cellctl.config.profile import PartProfile
from cellctl.text import NAME_MAX, unsafe_character

# An indication shorter than this at the model input is below what the student resolves: its
# last feature map is 7 x 7 over 224 px (32 px per cell), and lines of a few pixels were the
# shortest in its training data. The POD figures of the model card measure what it really finds.
MIN_INDICATION_MODEL_PX = 5.0


@dataclass(frozen=True)
class ViewSpec:
    """One model input of a part: a tile of a head frame or of the line-scan strip.

    Tiles are placed on the located part (cellctl.vision.tiles), not fixed in the profile.
    """

    name: str  # "head@90", "head@90#1" (a second tile of that frame), "shank[r1,c0]"
    kind: str  # "head" | "shank"
    source: int  # index of the head frame, or -1 for the strip
    x_px: int
    y_px: int
    width_px: int
    height_px: int


@dataclass(frozen=True)
class ResolvedProfile:
    name: str
    path: Path
    profile: PartProfile
    model_path: Path
    sha256: str  # of the profile file as it was loaded (a later edit takes a reload to count)


def resolved(path: Path) -> Path:
    """``path.resolve()``; a loop of symbolic links is an OSError (ELOOP) as any other path the
    OS refuses (Python 3.11 raises RuntimeError for it), so callers name it in one line."""
    try:
        return path.resolve()
    except RuntimeError as exc:  # "Symlink loop from ..."
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from exc


def path_problem(exc: OSError) -> str:
    """An OSError about a path as the few words a message needs ("Too many levels of ...")."""
    return exc.strerror or str(exc)


def file_sha256(path: Path) -> str:
    """sha256 of a file, hashed once per content version (profiles share model files)."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def indication_px(profile: PartProfile) -> dict[str, float]:
    """How many model-input pixels the profile's smallest indication spans, per tile kind, in
    the direction it is smallest (an indication may lie any way round)."""
    pre, optics, g = profile.preprocess, profile.optics, profile.geometry
    length, size = profile.inspection.min_indication_length_mm, pre.input_size_px
    around_px_per_mm = profile.line_scan.lines_per_revolution / (math.pi * g.shank_diameter_mm)
    tile = pre.shank_tile_px
    return {
        "head": length * optics.frame_px_per_mm * size / pre.head_tile_px,
        "shank": length * min(optics.line_px_per_mm * size / tile.axis, around_px_per_mm * size / tile.around),
    }


PACKAGE_CARD = "card.json"  # beside a model of a `cellctl train` package


def _package_problem(model_path: Path, sha256: str) -> str | None:
    """A model inside a model package (its folder holds card.json) must be a model the card
    measured: a file swapped into a package would borrow figures that are not its own."""
    card_path = model_path.parent / PACKAGE_CARD
    if not card_path.exists() and not card_path.is_symlink():  # a card.json that is no file is refused
        return None
    try:
        card = read_package_card(card_path)
    except CardError as exc:
        return f"{model_path.name} is in a model package whose {PACKAGE_CARD} is refused: {exc}"
    if sha256 not in {card.models.fp32.sha256, card.models.int8.sha256}:
        return f"{model_path.name} is not a model its package's {PACKAGE_CARD} measured (sha256 {sha256})"
    return None


def resolve_profile(path: Path, cell: CellConfig | None = None, *, verify_model: bool = True) -> ResolvedProfile:
    """Load a profile, check it against the cell wiring and (optionally) its model file."""
    try:
        path = resolved(path)
    except OSError as exc:
        raise ConfigError([Problem(str(path), 0, "", f"cannot read: {path_problem(exc)}")]) from exc
    data = read_yaml(path)
    profile = validate(PartProfile, data, path)
    problems: list[Problem] = []
    try:
        sha256 = file_sha256(path)  # once per load: every verdict under this profile carries it
    except OSError as exc:  # gone since it was read
        raise ConfigError([Problem(str(path), 0, "", f"cannot read: {exc.strerror or exc}")]) from exc

    def problem(field: str, message: str) -> None:
        problems.append(Problem(str(path), line_of(data, field), field, message))

    name_problem = profile_name_problem(path.stem)
    if name_problem is not None:  # the file name is the profile name the robot sends
        problems.append(Problem(str(path), 0, "", f"profile name (the file name) {name_problem}"))
    model_path = path.parent / profile.model.path
    if verify_model:
        try:
            model_path = resolved(model_path)
            if not model_path.is_file():
                problem("model.path", f"no such file: {model_path}")
            elif (actual := file_sha256(model_path)) != profile.model.sha256:
                problem("model.sha256", f"does not match {model_path.name}, whose sha256 is {actual}")
            elif (package_problem := _package_problem(model_path, actual)) is not None:
                problem("model.path", package_problem)
        except OSError as exc:  # a name too long, a loop of links, a folder we may not read
            problem("model.path", f"cannot read {model_path}: {path_problem(exc)}")
    else:
        with contextlib.suppress(OSError):  # then a loop is named where the model is opened
            model_path = resolved(model_path)
    for kind, px in indication_px(profile).items():
        if px < MIN_INDICATION_MODEL_PX:
            field = "preprocess.head_tile_px" if kind == "head" else "preprocess.shank_tile_px"
            problem(
                field,
                f"shows a {profile.inspection.min_indication_length_mm:g} mm indication (inspection."
                f"min_indication_length_mm) as {px:.1f} px at the model input, below the "
                f"{MIN_INDICATION_MODEL_PX:g} px the student resolves: use smaller tiles or a larger minimum",
            )
    if cell is not None:
        line = profile.line_scan
        counts = cell.devices.stage.encoder_counts_per_rev
        lines = counts * line.encoder_multiplier / line.encoder_divider
        if lines != line.lines_per_revolution:
            problem(
                "line_scan.lines_per_revolution",
                f"is {line.lines_per_revolution}, but the encoder gives {counts} x "
                f"{line.encoder_multiplier} / {line.encoder_divider} = {lines:g} lines per revolution",
            )
    if problems:
        raise ConfigError(problems)
    return ResolvedProfile(path.stem, path, profile, model_path, sha256)


def load_cell(path: Path) -> CellConfig:
    try:
        path = resolved(path)
    except OSError as exc:
        raise ConfigError([Problem(str(path), 0, "", f"cannot read: {path_problem(exc)}")]) from exc
    return load(CellConfig, path)


# the path fields of a cell config, for naming the one a value came from
CELL_PATH_FIELDS = ("profiles_dir", "storage.records_db", "storage.captures.dir")


def cell_relative(config_path: Path, value: str, field: str | None = None) -> Path:
    """Paths in a cell config are relative to the config file. A path the OS refuses to
    resolve (a loop of symbolic links) is a ConfigError naming the config's line and field
    (``field``, else the path field that holds ``value``)."""
    try:
        return resolved(resolved(config_path).parent / value)
    except OSError as exc:
        if field is None:
            field = next((f for f in CELL_PATH_FIELDS if _config_value(config_path, f) == value), "")
        line = _config_line(config_path, field) if field else 0
        message = f"cannot use {value}: {path_problem(exc)}"
        raise ConfigError([Problem(str(config_path), line, field, message)]) from exc


def load_profiles(config_path: Path, cell: CellConfig) -> dict[str, ResolvedProfile]:
    """Every profile in the cell's profile folder, by name; any error fails the whole set.

    Each ``*.yaml`` there is read: a profile is resolved, another cell config is skipped, and
    a file that is no YAML at all (Latin-1, binary), no regular file (a FIFO, a folder) or
    cannot be reached (a loop of links) is a problem, since it may be a profile that an
    editor saved wrongly. YAML that is no mapping (a list, a single value) holds neither a
    profile nor a cell config: it is a problem too.
    """
    folder = cell_relative(config_path, cell.profiles_dir, "profiles_dir")
    problems: list[Problem] = []
    profiles: dict[str, ResolvedProfile] = {}
    try:
        is_folder = folder.is_dir()
    except OSError as exc:  # a name too long
        is_folder, missing = False, f"cannot use {folder}: {path_problem(exc)}"
    else:
        missing = f"no such folder: {folder}"
    if not is_folder:
        problems.append(Problem(str(config_path), _config_line(config_path, "profiles_dir"), "profiles_dir", missing))
        raise ConfigError(problems)
    config_resolved = resolved(config_path)
    try:
        paths = sorted(folder.glob("*.yaml"))
    except OSError as exc:
        message = f"cannot list {folder}: {path_problem(exc)}"
        line = _config_line(config_path, "profiles_dir")
        raise ConfigError([Problem(str(config_path), line, "profiles_dir", message)]) from exc
    for path in paths:
        try:
            try:
                if resolved(path) == config_resolved:
                    continue
            except OSError as exc:
                raise ConfigError([Problem(str(path), 0, "", f"cannot read: {path_problem(exc)}")]) from exc
            data = read_yaml(path)
            if not isinstance(data, dict):
                kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
                message = f"holds {kind}, neither a profile nor a cell config (a mapping of fields)"
                raise ConfigError([Problem(str(path), 1, "", message)])
            if document_kind(data) != "profile":
                continue
            profiles[path.stem] = resolve_profile(path, cell)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if cell.default_profile not in profiles and not problems:
        problems.append(
            Problem(
                str(config_path),
                _config_line(config_path, "default_profile"),
                "default_profile",
                f"no profile {cell.default_profile!r} in {folder} (have: {', '.join(profiles) or 'none'})",
            )
        )
    if problems:
        raise ConfigError(problems)
    return profiles


def _config_value(config_path: Path, field: str) -> Any:
    try:
        node: Any = read_yaml(config_path)
    except ConfigError:
        return None
    for part in field.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _config_line(config_path: Path, field: str) -> int:
    try:
        return line_of(read_yaml(config_path), field)
    except ConfigError:
        return 0


def profile_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a profile name (it travels in verdicts and records), or None."""
    if not 1 <= len(name) <= NAME_MAX:
        return f"must be 1-{NAME_MAX} characters long (is {len(name)})"
    return unsafe_character(name)


# Keys that only one of the two kinds of file has; a file is told by which it has more of,
# so a profile missing part_number is still validated as a profile and says so.
PROFILE_KEYS = frozenset(
    {
        "part_number",
        "model",
        "preprocess",
        "geometry",
        "head_positions_deg",
        "line_scan",
        "frame_camera",
        "lighting",
        "motion",
        "decision",
        "promotion",
    }
)
CELL_KEYS = frozenset(
    {
        "cell_id",
        "devices",
        "robot",
        "profiles_dir",
        "default_profile",
        "storage",
        "timeouts",
        "inference_threads",
        "log_format",
    }
)


def document_kind(data: Any) -> str:
    """``"profile"`` or ``"cell"`` by the top-level keys of parsed YAML (a cell config if unsure)."""
    if not isinstance(data, dict):
        return "cell"
    keys = {k for k in data if isinstance(k, str)}
    return "profile" if len(keys & PROFILE_KEYS) > len(keys & CELL_KEYS) else "cell"


def is_profile_file(path: Path) -> bool:
    """Whether ``path`` holds a part profile; raises ConfigError if it is no readable YAML."""
    return document_kind(read_yaml(path)) == "profile"
