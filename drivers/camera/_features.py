"""GenICam feature plans: which features a profile sets, in which order, and their checks.

Transport parameters (PixelFormat, Width, Height) lock once acquisition starts, and a
selector must be written before the features it selects, so a plan is an ordered list.
Each write is checked; a refusal names the camera, the feature, the value and what the
device allows (its range or its entries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cellctl.drivers.camera._settings import FrameCameraSettings, LineScanSettings
from cellctl.drivers.errors import DriverInitError


class NodeMap(Protocol):
    """The part of a GenApi node map (harvesters' remote_device.node_map) the plans use."""

    def has_node(self, name: str) -> bool: ...


@dataclass(frozen=True)
class FeatureWrite:
    names: tuple[str, ...]  # spellings to probe, first found wins (DALSA camelCase, then SFNC)
    value: Any
    required: bool = True


def _w(names: str | Sequence[str], value: Any, required: bool = True) -> FeatureWrite:
    return FeatureWrite((names,) if isinstance(names, str) else tuple(names), value, required)


def frame_camera_plan(s: FrameCameraSettings) -> list[FeatureWrite]:
    """Genie Nano C2420: FrameStart trigger from software or Line1, format, exposure, gain."""
    return [
        _w("PixelFormat", s.pixel_format),
        _w("Width", s.width_px),
        _w("Height", s.height_px),
        _w("ExposureMode", "Timed", required=False),
        _w("ExposureTime", float(s.exposure_us)),
        _w("Gain", float(s.gain_db)),
        _w("TriggerSelector", "FrameStart"),
        _w("TriggerMode", "On"),
        _w("TriggerSource", s.trigger_source),
        _w("TriggerActivation", "RisingEdge", required=s.trigger_source != "Software"),
    ]


def line_scan_plan(s: LineScanSettings) -> list[FeatureWrite]:
    """Linea: one line per encoder step (LineStart from the rotary encoder), one revolution per
    frame (Height = lines per revolution), encoder scaling; DALSA names first, SFNC second."""
    return [
        _w("PixelFormat", s.pixel_format),
        _w("Width", s.line_width_px),
        _w("Height", s.lines_per_revolution),
        _w("ExposureTime", float(s.exposure_us)),
        _w("Gain", float(s.gain_db)),
        _w(("rotaryEncoderMultiplier", "EncoderMultiplier"), s.encoder_multiplier),
        _w(("rotaryEncoderDivider", "EncoderDivider"), s.encoder_divider),
        _w(("rotaryEncoderOutputMode", "EncoderOutputMode"), "Position"),  # no lines turning back
        # the direction node's name and entries vary by firmware (unconfirmed): only if present
        _w(("rotaryEncoderDirection", "EncoderDirection"), s.encoder_direction, required=False),
        _w("TriggerSelector", "LineStart"),
        _w("TriggerMode", "On"),
        _w("TriggerSource", ("rotaryEncoder1", "Encoder0")),
        *(
            [_w("TriggerSelector", "FrameStart"), _w("TriggerMode", "On"), _w("TriggerSource", s.index_input)]
            if s.index_input
            else [_w("TriggerSelector", "FrameStart", required=False), _w("TriggerMode", "Off", required=False)]
        ),
    ]


def _allowed(node: Any) -> str:
    symbolics = getattr(node, "symbolics", None)
    if symbolics:
        return "one of " + ", ".join(symbolics)
    try:
        lo, hi = node.min, node.max
    except Exception:  # noqa: BLE001 - a node without range: nothing more to say
        return "a value the device accepts"
    try:
        inc = node.inc
    except Exception:  # noqa: BLE001 - GenApi raises when a float has no increment
        inc = None
    step = f" in steps of {inc}" if isinstance(inc, int) and inc > 1 else ""
    return f"{lo} .. {hi}{step}"


def apply_plan(node_map: Any, plan: Sequence[FeatureWrite], camera: str, strict: bool = True) -> list[str]:
    """Write the plan in order; returns the features skipped (absent and not required, or
    absent and ``strict`` off). Raises DriverInitError on the first refused write."""
    import genicam.genapi as genapi

    refused = (genapi.OutOfRangeException, genapi.InvalidArgumentException, genapi.AccessException,
               genapi.LogicalErrorException)
    skipped = []
    for write in plan:
        name = next((n for n in write.names if node_map.has_node(n)), None)
        if name is None:
            if write.required and strict:
                raise DriverInitError(
                    f"camera {camera}: feature {' / '.join(write.names)} does not exist on this device "
                    f"(needed to set {write.value!r})"
                )
            skipped.append(write.names[0])
            continue
        node = getattr(node_map, name)
        value = _pick(write.value, node)
        try:
            node.value = value
        except refused as exc:
            raise DriverInitError(
                f"camera {camera}: {name} = {value!r} refused; allowed: {_allowed(node)} ({type(exc).__name__})"
            ) from exc
    return skipped


def _pick(value: Any, node: Any) -> Any:
    """A tuple value lists spellings of an enum entry: the first the device knows."""
    if isinstance(value, tuple):
        symbolics = getattr(node, "symbolics", ()) or ()
        return next((v for v in value if v in symbolics), value[0])
    return value
