"""The one exception hierarchy of cellctl (core errors derive from CellError too)."""


class CellError(Exception):
    """Base of every error cellctl raises on purpose."""


class DriverUnavailable(CellError, NotImplementedError):
    """The backend named by a device URL cannot be loaded (unknown scheme, missing extra)."""


class DriverInitError(CellError):
    """The device was reached but refused its configuration."""


class DriverIOError(CellError):
    """Talking to the device failed (lost link, garbage, device fault)."""


class DriverTimeout(DriverIOError, TimeoutError):
    """The device did not answer within the step's timeout."""
