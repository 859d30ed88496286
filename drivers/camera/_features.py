"""GenICam feature plans: which features a profile sets, in which order, and their checks.

Transport parameters (PixelFormat, Width, Height) lock once acquisition starts, and a
selector must be written before the features it selects, so a plan is an ordered list.
Each write is checked; a refusal names the camera, the feature, the value and what the
device allows (its range or its entries).

A selector write opens a group: the writes after it, up to the next selector, set what it
selects. A device without the selector node has one trigger only, which by SFNC is the
FrameStart trigger: a FrameStart group then applies to it, a LineStart group is skipped
(``without_selector``). Once a write of a group is skipped, the rest of the group is too: a
TriggerMode On without the TriggerSource it goes with would stop the camera. A write that is
not required and names an enumeration entry the device lacks is skipped, not refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cellctl.drivers.camera._settings import FrameCameraSettings, LineScanSettings
from cellctl.drivers.errors import DriverInitError


class NodeMap(Protocol):
    """The part of a GenApi node map (harvesters' remote_device.node_map) the plans use."""

    def has_node(self, name: str) -> bool: ...


SELECTOR = "TriggerSelector"


@dataclass(frozen=True)
class FeatureWrite:
    names: tuple[str, ...]  # spellings to probe, first found wins (DALSA camelCase, then SFNC)
    value: Any
    required: bool = True
    # a selector write only: what its group does on a device without the selector node
    without_selector: Literal["apply", "skip"] = "apply"


def _w(
    names: str | Sequence[str], value: Any, required: bool = True, without_selector: Literal["apply", "skip"] = "apply"
) -> FeatureWrite:
    return FeatureWrite((names,) if isinstance(names, str) else tuple(names), value, required, without_selector)


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
    frame (Height = lines per revolution), encoder scaling; DALSA names first, SFNC second.

    Each strip starts on FrameStart: from the index input if the profile has one, else from
    software (begin_strip fires it), so a strip never starts mid-revolution by accident. A
    device offering no software FrameStart skips that group (begin_strip then only flushes)."""
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
        _w("TriggerSelector", "LineStart", without_selector="skip"),
        _w("TriggerMode", "On"),
        _w("TriggerSource", ("rotaryEncoder1", "Encoder0")),
        *(
            [_w("TriggerSelector", "FrameStart"), _w("TriggerMode", "On"), _w("TriggerSource", s.index_input)]
            if s.index_input
            else [  # the source before the mode: On is only written once Software is set
                _w("TriggerSelector", "FrameStart", required=False),
                _w("TriggerSource", "Software", required=False),
                _w("TriggerMode", "On", required=False),
            ]
        ),
    ]


def software_frame_start(plan: Sequence[FeatureWrite], skipped: Sequence[str]) -> bool:
    """Whether applying ``plan`` (which skipped ``skipped``) set FrameStart from Software."""
    group = None
    for write in plan:
        if write.names[0] == SELECTOR:
            group = write.value
        elif group == "FrameStart" and write.names[0] == "TriggerSource" and write.value == "Software":
            return f"TriggerSource@{group}" not in skipped and "TriggerSource" not in skipped
    return False


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
    absent and ``strict`` off; ``name@Selector`` for the writes of a skipped group). Raises
    DriverInitError on the first refused write."""
    import genicam.genapi as genapi

    refused = (
        genapi.OutOfRangeException,
        genapi.InvalidArgumentException,
        genapi.AccessException,
        genapi.LogicalErrorException,
    )
    skipped: list[str] = []
    group: str | None = None  # the selector value of the current group
    group_skipped = False
    for write in plan:
        label = write.names[0] if group is None else f"{write.names[0]}@{group}"
        if write.names[0] == SELECTOR:
            group, group_skipped = write.value, False
            label = write.names[0]
            if not node_map.has_node(SELECTOR) and (not write.required or not strict):
                group_skipped = write.without_selector == "skip"
                skipped.append(f"{SELECTOR}={write.value}")
                continue
        elif group_skipped:
            skipped.append(label)
            continue
        name = next((n for n in write.names if node_map.has_node(n)), None)
        if name is None:
            if write.required and strict:
                raise DriverInitError(
                    f"camera {camera}: feature {' / '.join(write.names)} does not exist on this device "
                    f"(needed to set {write.value!r})"
                )
            skipped.append(label)
            group_skipped = group is not None
            continue
        node = getattr(node_map, name)
        value = _pick(write.value, node)
        if not write.required and not _offered(value, node):
            skipped.append(label if name != SELECTOR else f"{SELECTOR}={value}")
            group_skipped = group is not None
            continue
        try:
            node.value = value
        except refused as exc:
            raise DriverInitError(
                f"camera {camera}: {name} = {value!r} refused; allowed: {_allowed(node)} ({type(exc).__name__})"
            ) from exc
    return skipped


def _offered(value: Any, node: Any) -> bool:
    """False only for an enumeration entry the device does not list."""
    symbolics = getattr(node, "symbolics", None)
    return not (symbolics and isinstance(value, str) and value not in symbolics)


def _pick(value: Any, node: Any) -> Any:
    """A tuple value lists spellings of an enum entry: the first the device knows."""
    if isinstance(value, tuple):
        symbolics = getattr(node, "symbolics", ()) or ()
        return next((v for v in value if v in symbolics), value[0])
    return value
