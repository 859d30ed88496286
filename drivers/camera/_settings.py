from __future__ import annotations

from typing import Literal

from pydantic import Field

from cellctl.drivers.settings import SettingsModel

PixelFormat = Literal["BayerRG8", "RGB8", "Mono8"]


class FrameCameraSettings(SettingsModel):
    """Genie Nano C2420 acquisition settings (GenICam feature in brackets)."""

    pixel_format: PixelFormat = Field(
        default="BayerRG8",
        description="[PixelFormat] on the wire; BayerRG8 carries 3x less than RGB8 over GigE",
    )
    width_px: int = Field(default=2464, ge=16, le=2464, description="[Width]")
    height_px: int = Field(default=2056, ge=16, le=2056, description="[Height]")
    exposure_us: float = Field(default=8000.0, ge=10.0, le=1_000_000.0, description="[ExposureTime]")
    gain_db: float = Field(default=0.0, ge=0.0, le=24.0, description="[Gain]")
    trigger_source: Literal["Software", "Line1"] = Field(
        default="Software", description="[TriggerSource] of FrameStart"
    )


class LineScanSettings(SettingsModel):
    """Linea acquisition settings; one frame is one revolution of the turntable."""

    pixel_format: PixelFormat = Field(default="RGB8", description="[PixelFormat]")
    line_width_px: int = Field(default=2048, ge=16, le=2048, description="[Width]")
    lines_per_revolution: int = Field(
        default=2048, ge=64, le=16384, description="[Height]; = encoder edges x multiplier / divider"
    )
    encoder_multiplier: int = Field(default=1, ge=1, le=32, description="[rotaryEncoderMultiplier]")
    encoder_divider: int = Field(default=4, ge=1, le=128, description="[rotaryEncoderDivider]")
    encoder_direction: Literal["Forward", "Reverse"] = Field(
        default="Forward", description="[rotaryEncoderDirection]: which turning sense counts up"
    )
    index_input: Literal["Line1", "Line2", "Line3", "Line4"] | None = Field(
        default=None,
        description="[TriggerSource] of FrameStart: the turntable's index pulse starts each strip; "
        "None: strips follow Height from the start of acquisition",
    )
    exposure_us: float = Field(default=20.0, ge=2.0, le=3000.0, description="[ExposureTime]")
    gain_db: float = Field(default=0.0, ge=0.0, le=24.0, description="[Gain]")
