"""Cell config and part profiles: pydantic models, YAML loading with lines, resolving."""

from cellctl.config.cell import (
    CaptureSettings,
    CellConfig,
    Devices,
    RobotLink,
    RobotLinkSettings,
    Storage,
    Timeouts,
)
from cellctl.config.loader import ConfigError, Problem, line_of, load, read_yaml, validate
from cellctl.config.preflight import emulated_devices, preflight, records_problem, verify_models
from cellctl.config.profile import (
    FixtureSettings,
    GuardSettings,
    InspectionSettings,
    OpticsSettings,
    PartProfile,
    PreprocessSettings,
    ShankTile,
    SimGeometry,
)
from cellctl.config.resolve import (
    MIN_INDICATION_MODEL_PX,
    ResolvedProfile,
    ViewSpec,
    cell_relative,
    document_kind,
    file_sha256,
    indication_px,
    is_profile_file,
    load_cell,
    load_profiles,
    resolve_profile,
)

__all__ = [
    # models
    "CaptureSettings",
    "CellConfig",
    "Devices",
    "PartProfile",
    "PreprocessSettings",
    "RobotLink",
    "RobotLinkSettings",
    "FixtureSettings",
    "GuardSettings",
    "InspectionSettings",
    "OpticsSettings",
    "ShankTile",
    "SimGeometry",
    "Storage",
    "Timeouts",
    # loading
    "ConfigError",
    "Problem",
    "line_of",
    "load",
    "read_yaml",
    "validate",
    # resolving
    "MIN_INDICATION_MODEL_PX",
    "ResolvedProfile",
    "ViewSpec",
    "cell_relative",
    "document_kind",
    "file_sha256",
    "is_profile_file",
    "load_cell",
    "load_profiles",
    "indication_px",
    "resolve_profile",
    # preflight: what `run` would refuse, found first
    "emulated_devices",
    "preflight",
    "records_problem",
    "verify_models",
]
