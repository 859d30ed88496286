"""Hardware drivers of the inspection cell.

One small async Protocol per device kind (camera, stage, lighting), one module per backend,
and a registry that picks the backend by the URL scheme of the cell config. This package
never imports ``cellctl`` core modules: each driver owns the pydantic settings of its device.
"""

from cellctl.drivers.errors import (
    CellError,
    DriverInitError,
    DriverIOError,
    DriverTimeout,
    DriverUnavailable,
)
from cellctl.drivers.registry import BackendRegistry, DeviceUrl
from cellctl.drivers.settings import SettingsModel

__all__ = [
    # errors
    "CellError",
    "DriverInitError",
    "DriverIOError",
    "DriverTimeout",
    "DriverUnavailable",
    # backend selection
    "BackendRegistry",
    "DeviceUrl",
    # settings
    "SettingsModel",
]
