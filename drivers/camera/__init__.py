"""Cameras: the frame camera (head views) and the line-scan camera (shank strip).

Backends: ``sim://`` (in-process renderer, cellctl.sim) and ``gentl://`` (any GenTL producer
through harvesters, drivers/camera/gentl.py).
"""

from cellctl.drivers.camera._features import FeatureWrite, apply_plan, frame_camera_plan, line_scan_plan
from cellctl.drivers.camera._frame import Frame
from cellctl.drivers.camera._protocol import FrameCamera, LineScanCamera
from cellctl.drivers.camera._settings import FrameCameraSettings, LineScanSettings, PixelFormat
from cellctl.drivers.registry import BackendRegistry

FRAME_CAMERAS = BackendRegistry(
    "frame camera",
    {
        "sim": "cellctl.sim.camera:SimFrameCamera",
        "gentl": "cellctl.drivers.camera.gentl:GenTLFrameCamera",
    },
    options={"sim": "cellctl.sim.options:SimOptions", "gentl": "cellctl.drivers.camera.gentl:GenTLOptions"},
)
LINE_CAMERAS = BackendRegistry(
    "line-scan camera",
    {
        "sim": "cellctl.sim.camera:SimLineScanCamera",
        "gentl": "cellctl.drivers.camera.gentl:GenTLLineScanCamera",
    },
    options={"sim": "cellctl.sim.options:SimOptions", "gentl": "cellctl.drivers.camera.gentl:GenTLOptions"},
)

__all__ = [
    "FRAME_CAMERAS",
    "LINE_CAMERAS",
    "FeatureWrite",
    "Frame",
    "FrameCamera",
    "FrameCameraSettings",
    "LineScanCamera",
    "LineScanSettings",
    "PixelFormat",
    "apply_plan",
    "frame_camera_plan",
    "line_scan_plan",
]
