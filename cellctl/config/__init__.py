"""Cell config and part profiles: pydantic models, YAML loading with lines, resolving."""

from cellctl.config.cell import CellConfig, Devices, RobotLink, RobotLinkSettings, Storage, Timeouts
from cellctl.config.loader import ConfigError, Problem, line_of, load, read_yaml, validate
from cellctl.config.preflight import emulated_devices, preflight, records_problem, verify_models
from cellctl.config.profile import PartProfile, PreprocessSettings, Roi, SimGeometry, Tiling
from cellctl.config.resolve import (
    ResolvedProfile,
    ViewSpec,
    cell_relative,
    document_kind,
    file_sha256,
    is_profile_file,
    load_cell,
    load_profiles,
    resolve_profile,
    view_specs,
)

__all__ = [
    # models
    "CellConfig",
    "Devices",
    "PartProfile",
    "PreprocessSettings",
    "RobotLink",
    "RobotLinkSettings",
    "Roi",
    "SimGeometry",
    "Storage",
    "Tiling",
    "Timeouts",
    # loading
    "ConfigError",
    "Problem",
    "line_of",
    "load",
    "read_yaml",
    "validate",
    # resolving
    "ResolvedProfile",
    "ViewSpec",
    "cell_relative",
    "document_kind",
    "file_sha256",
    "is_profile_file",
    "load_cell",
    "load_profiles",
    "resolve_profile",
    "view_specs",
    # preflight: what `run` would refuse, found first
    "emulated_devices",
    "preflight",
    "records_problem",
    "verify_models",
]
