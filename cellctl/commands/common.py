"""Helpers shared by commands: the embedded default config, profile lookup, error lines."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

from cellctl.config import (
    CellConfig,
    ConfigError,
    Problem,
    ResolvedProfile,
    cell_relative,
    load_cell,
    resolve_profile,
)
from cellctl.config.resolve import profile_name_problem
from cellctl.text import printable

EMBEDDED_CONFIG = "cell-sim.yaml"
DEFAULT_CELL_CONFIG = Path("/etc/cellctl/cell.yaml")  # as `cellctl run` under the service


class NoCellConfig(Exception):
    """A reading command was given no cell config and none is installed: the one line shown."""


def installed_cell(config: Path | None, instead: str) -> tuple[Path, CellConfig]:
    """The cell config given with --config, else the installed one (ConfigError if invalid,
    NoCellConfig naming ``instead``, the option that does without one, if there is none)."""
    path = config if config is not None else DEFAULT_CELL_CONFIG
    if not path.is_file():
        raise NoCellConfig(f"{path}: no cell config here (give --config or {instead})")
    return path, load_cell(path)


def embedded_config() -> Path:
    """The sim cell config shipped inside the package (profiles/cell-sim.yaml)."""
    return Path(str(files("cellctl.profiles") / EMBEDDED_CONFIG))


def find_profile(
    name: str, config_path: Path | None, *, verify_model: bool = True
) -> tuple[ResolvedProfile, CellConfig, Path]:
    """A profile by name (in the config's profiles_dir) or by YAML path; ConfigError if none."""
    config_path = config_path or embedded_config()
    cell = load_cell(config_path)
    candidate = Path(name)
    if candidate.suffix not in (".yaml", ".yml"):
        problem = profile_name_problem(name)
        folder = cell_relative(config_path, cell.profiles_dir)
        candidate = folder / f"{name}.yaml"
        if problem is not None or not candidate.is_file():
            have = sorted(p.stem for p in folder.glob("*.yaml") if p.resolve() != config_path.resolve())
            why = f"is no profile name: {problem}" if problem else f"is not in {folder}"
            message = f"{printable(name)!r} {why} (have: {', '.join(have) or 'none'})"
            raise ConfigError([Problem("--profile", 0, "", message)])
    return resolve_profile(candidate, cell, verify_model=verify_model), cell, config_path


def report(exc: ConfigError) -> None:
    """One ``error: file:line: field: message`` line per problem, on stderr."""
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)
