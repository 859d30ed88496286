"""Genie Nano and Linea feature plans against node maps with exactly their feature names."""

from __future__ import annotations

import pytest

from cellctl.drivers import DriverInitError
from cellctl.drivers.camera import (
    FrameCameraSettings,
    LineScanSettings,
    apply_plan,
    frame_camera_plan,
    line_scan_plan,
)
from cellctl.drivers.camera._features import software_frame_start
from tests.data.nodemaps import GENIE_NANO_C2420, LINEA_2K_DALSA, LINEA_2K_SFNC, node_map


def test_genie_nano_plan_sets_every_feature_of_the_profile():
    nm = node_map(GENIE_NANO_C2420)
    s = FrameCameraSettings(
        pixel_format="BayerRG8", width_px=2448, height_px=2048, exposure_us=6500, gain_db=3.5, trigger_source="Line1"
    )
    assert apply_plan(nm, frame_camera_plan(s), "head") == []
    assert (nm.PixelFormat.value, nm.Width.value, nm.Height.value) == ("BayerRG8", 2448, 2048)
    assert (nm.ExposureTime.value, nm.Gain.value) == (6500.0, 3.5)
    assert (nm.TriggerSelector.value, nm.TriggerMode.value, nm.TriggerSource.value) == ("FrameStart", "On", "Line1")
    assert nm.TriggerActivation.value == "RisingEdge"


def test_transport_parameters_come_first_and_selectors_before_what_they_select():
    plan = [w.names[0] for w in frame_camera_plan(FrameCameraSettings())]
    assert plan[:3] == ["PixelFormat", "Width", "Height"]  # they lock when acquisition starts
    assert plan.index("TriggerSelector") < plan.index("TriggerMode") < plan.index("TriggerSource")
    line = [w.names[0] for w in line_scan_plan(LineScanSettings())]
    first, second = [i for i, n in enumerate(line) if n == "TriggerSelector"]
    assert first < line.index("TriggerMode") < second


def test_exposure_out_of_range_names_camera_feature_value_and_range():
    nm = node_map(GENIE_NANO_C2420)
    plan = frame_camera_plan(FrameCameraSettings(exposure_us=8000))
    plan = [w if w.names[0] != "ExposureTime" else type(w)(w.names, 5.0) for w in plan]
    with pytest.raises(DriverInitError) as err:
        apply_plan(nm, plan, "head-cam")
    assert str(err.value).startswith("camera head-cam: ExposureTime = 5.0 refused; allowed: 10.0 .. 1000000.0")
    assert "OutOfRangeException" in str(err.value)


def test_width_off_the_increment_is_refused_with_the_step():
    nm = node_map(GENIE_NANO_C2420)
    with pytest.raises(DriverInitError, match=r"Width = 1000 refused; allowed: 16 .. 2464 in steps of 16"):
        apply_plan(nm, frame_camera_plan(FrameCameraSettings(width_px=1000)), "head")


def test_pixel_format_the_device_lacks_lists_its_entries():
    nm = node_map([x for x in GENIE_NANO_C2420 if "PixelFormat" not in x] + [_enum_xml("PixelFormat", ["Mono8"])])
    with pytest.raises(DriverInitError, match=r"PixelFormat = 'BayerRG8' refused; allowed: one of Mono8"):
        apply_plan(nm, frame_camera_plan(FrameCameraSettings()), "head")


def test_missing_feature_is_an_error_unless_strict_is_off():
    nm = node_map([x for x in GENIE_NANO_C2420 if '"Gain"' not in x])
    with pytest.raises(DriverInitError, match="feature Gain does not exist"):
        apply_plan(nm, frame_camera_plan(FrameCameraSettings()), "head")
    assert apply_plan(nm, frame_camera_plan(FrameCameraSettings()), "head", strict=False) == ["Gain"]


@pytest.mark.parametrize(
    "features, multiplier_node, skipped",
    [
        (LINEA_2K_DALSA, "rotaryEncoderMultiplier", []),
        (LINEA_2K_SFNC, "EncoderMultiplier", ["rotaryEncoderDirection"]),  # optional, absent in SFNC
    ],
)
def test_linea_plan_probes_dalsa_then_sfnc_encoder_names(features, multiplier_node, skipped):
    nm = node_map(features)
    s = LineScanSettings(lines_per_revolution=4096, encoder_multiplier=2, encoder_divider=4)
    assert apply_plan(nm, line_scan_plan(s), "shank") == skipped
    assert getattr(nm, multiplier_node).value == 2
    assert nm.Height.value == 4096  # one revolution per frame
    # without selectors in this node map the last writes win: FrameStart from Software
    assert (nm.TriggerMode.value, nm.TriggerSource.value) == ("On", "Software")
    line_start = [(w.names[0], w.value) for w in line_scan_plan(s)][-6:-3]
    assert line_start == [
        ("TriggerSelector", "LineStart"),
        ("TriggerMode", "On"),
        ("TriggerSource", ("rotaryEncoder1", "Encoder0")),
    ]


def test_linea_index_input_starts_each_strip_on_the_index_pulse():
    nm = node_map(
        [x for x in LINEA_2K_DALSA if '"TriggerSource"' not in x]
        + [
            '<Enumeration Name="TriggerSource"><EnumEntry Name="rotaryEncoder1"><Value>0</Value></EnumEntry>'
            '<EnumEntry Name="Line3"><Value>1</Value></EnumEntry><Value>0</Value></Enumeration>'
        ]
    )
    apply_plan(nm, line_scan_plan(LineScanSettings(index_input="Line3")), "shank")
    # without selectors in this node map the last writes win: FrameStart from Line3
    assert (nm.TriggerSelector.value, nm.TriggerMode.value, nm.TriggerSource.value) == ("FrameStart", "On", "Line3")
    refusal = r"TriggerSource = 'Line2' refused; allowed: one of rotaryEncoder1, Line3"
    with pytest.raises(DriverInitError, match=refusal):
        apply_plan(nm, line_scan_plan(LineScanSettings(index_input="Line2")), "shank")


def _enum_xml(name: str, entries: list[str]) -> str:
    body = "".join(f'<EnumEntry Name="{e}"><Value>{i}</Value></EnumEntry>' for i, e in enumerate(entries))
    return f'<Enumeration Name="{name}">{body}<Value>0</Value></Enumeration>'


def _without(features: list[str], *names: str) -> list[str]:
    return [x for x in features if x.split('"')[1] not in names]


def test_linea_without_index_starts_each_strip_by_software_frame_start():
    plan = line_scan_plan(LineScanSettings())
    skipped = apply_plan(node_map(LINEA_2K_DALSA), plan, "shank")
    assert skipped == [] and software_frame_start(plan, skipped)
    frame_start = [(w.names[0], w.value) for w in plan][-3:]
    # the source before the mode: On is never written without Software behind it
    assert frame_start == [("TriggerSelector", "FrameStart"), ("TriggerSource", "Software"), ("TriggerMode", "On")]
    assert not software_frame_start(line_scan_plan(LineScanSettings(index_input="Line1")), [])


def test_a_selector_without_frame_start_skips_its_group_and_keeps_the_encoder_source():
    nm = node_map(_without(LINEA_2K_DALSA, "TriggerSelector") + [_enum_xml("TriggerSelector", ["LineStart"])])
    plan = line_scan_plan(LineScanSettings())
    skipped = apply_plan(nm, plan, "shank")
    assert skipped == ["TriggerSelector=FrameStart", "TriggerSource@FrameStart", "TriggerMode@FrameStart"]
    assert not software_frame_start(plan, skipped)
    assert (nm.TriggerSelector.value, nm.TriggerSource.value) == ("LineStart", "rotaryEncoder1")


def test_a_producer_with_one_trigger_and_no_selector_gets_the_frame_start_group_only():
    # TLSimu's shape: TriggerMode, TriggerSource (Software only), TriggerSoftware, no selector
    tlsimu_like = [
        _enum_xml("TriggerMode", ["Off", "On"]),
        _enum_xml("TriggerSource", ["Software"]),
        *(x for x in LINEA_2K_DALSA if x.split('"')[1] in ("PixelFormat", "Width", "Height")),
    ]
    nm = node_map(tlsimu_like)
    plan = line_scan_plan(LineScanSettings(pixel_format="Mono8"))
    with pytest.raises(DriverInitError, match="does not exist"):
        apply_plan(nm, plan, "shank")  # strict: a device without the Linea's features is refused
    skipped = apply_plan(nm, plan, "shank", strict=False)
    assert "TriggerSelector=LineStart" in skipped and "TriggerSource@LineStart" in skipped
    assert software_frame_start(plan, skipped)
    assert (nm.TriggerMode.value, nm.TriggerSource.value) == ("On", "Software")


def test_no_software_source_leaves_the_frame_start_mode_alone():
    nm = node_map(_without(LINEA_2K_DALSA, "TriggerSource") + [_enum_xml("TriggerSource", ["rotaryEncoder1"])])
    plan = line_scan_plan(LineScanSettings())
    skipped = apply_plan(nm, plan, "shank")
    assert skipped == ["TriggerSource@FrameStart", "TriggerMode@FrameStart"]
    assert not software_frame_start(plan, skipped)
