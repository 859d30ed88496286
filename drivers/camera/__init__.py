"""Cameras: the frame camera (head views) and the line-scan camera (shank strip).

Backends: ``sim://`` (in-process renderer, cellctl.sim). GenICam over harvesters comes with
the real drivers.
"""

from cellctl.drivers.camera._frame import Frame
from cellctl.drivers.camera._protocol import FrameCamera, LineScanCamera
from cellctl.drivers.camera._settings import FrameCameraSettings, LineScanSettings, PixelFormat
from cellctl.drivers.registry import BackendRegistry

FRAME_CAMERAS = BackendRegistry("frame camera", {"sim": "cellctl.sim.camera:SimFrameCamera"})
LINE_CAMERAS = BackendRegistry("line-scan camera", {"sim": "cellctl.sim.camera:SimLineScanCamera"})

__all__ = [
    "FRAME_CAMERAS",
    "LINE_CAMERAS",
    "Frame",
    "FrameCamera",
    "FrameCameraSettings",
    "LineScanCamera",
    "LineScanSettings",
    "PixelFormat",
]
