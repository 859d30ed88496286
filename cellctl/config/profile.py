"""Part profile: everything that depends on the fastener type (one YAML file per type)."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cellctl.drivers import SettingsModel
from cellctl.drivers.camera import FrameCameraSettings, LineScanSettings
from cellctl.drivers.lighting import LightingSettings
from cellctl.drivers.settings import FieldError
from cellctl.drivers.stage import MotionSettings
from cellctl.text import SafeName, SafePath, SafeText

SHA256_PATTERN = r"^[0-9a-f]{64}$"


class ShankTile(SettingsModel):
    """Size of one line-scan tile: columns along the shank axis, rows around the revolution."""

    axis: int = Field(ge=32, le=2048, description="columns along the shank axis")
    around: int = Field(ge=32, le=8192, description="strip rows (encoder lines) around the part")


class PreprocessSettings(SettingsModel):
    input_size_px: int = Field(default=224, ge=32, le=1024, description="square model input")
    normalisation: Literal["fixed", "minmax"] = Field(
        default="fixed",
        description="fixed: pixel / 255 (keeps fluorescence brightness); minmax: per view to [0, 1]",
    )
    # The tile sizes fix the scale the model sees (each tile is resized to the model input):
    # they are those the student was trained at. resolve.py checks that the smallest
    # indication the profile must find is still large enough at that scale.
    head_tile_px: int = Field(ge=32, le=2056, description="side of the square head tiles, frame pixels")
    shank_tile_px: ShankTile = Field(description="size of the line-scan tiles")


class OpticsSettings(SettingsModel):
    """Camera scale at the part (cell.md section 2: 101 mm over 2464 px, 129.6 mm over 2048 px)."""

    frame_px_per_mm: float = Field(default=2464 / 101.0, gt=1.0, le=1000.0, description="frame camera")
    line_px_per_mm: float = Field(
        default=2048 / 129.6, gt=1.0, le=1000.0, description="line-scan camera, along the shank axis"
    )


class FixtureSettings(SettingsModel):
    """Where a seated part appears in the images, and how far it may stray from there."""

    frame_centre_x_px: float = Field(default=1232.0, ge=0.0, description="column of the head's centre, frame image")
    frame_centre_y_px: float = Field(default=1028.0, ge=0.0, description="row of the head's centre, frame image")
    strip_datum_px: float = Field(default=220.0, ge=0.0, description="strip column of the under-head face")
    position_tolerance_mm: float = Field(default=3.0, gt=0.0, le=50.0, description="largest offset from there")
    size_tolerance: float = Field(
        default=0.12, gt=0.0, lt=0.5, description="relative, on head width and height, shank width and length"
    )
    # the strip shows a part shorter than nominal by its magnification (seating, runout: +-3 %
    # in PLANT renders) and by an end no film lights; past this, the end is unseen surface
    length_tolerance: float = Field(
        default=0.04, gt=0.0, lt=0.5, description="relative: how much shorter than nominal the strip may show the part"
    )
    max_tilt_deg: float = Field(default=3.0, gt=0.0, le=30.0, description="largest tilt of the part axis")


class InspectionSettings(SettingsModel):
    """What the profile must find, and how much of the surface must be seen to say so."""

    min_indication_length_mm: float = Field(
        default=1.0, gt=0.0, le=50.0, description="smallest relevant indication the cell must detect"
    )
    min_indication_contrast: float = Field(
        default=30.0, gt=0.0, le=255.0, description="its contrast, grey levels over the local surface"
    )
    required_coverage: float = Field(
        default=0.98, gt=0.0, le=1.0, description="fraction of the visible surface the tiles must cover"
    )
    tile_overlap: float = Field(default=0.1, ge=0.0, le=0.5, description="overlap of neighbouring tiles")


class GuardSettings(SettingsModel):
    """Input invariants of one view: a view outside them is RECHECK, never scored into a PASS.

    Levels are grey levels (0-255) of the green channel, the fluorescence behind the BP525 filter.
    """

    min_part_contrast: float = Field(
        default=8.0, gt=0.0, le=255.0, description="part surface over the background, below: no part seen"
    )
    # the student finds indications by their brightness (fixed normalisation): dimmed 0.3x
    # (0.4x), 39 (21) of 40 defective parts of a SEED test set (surface 38-58) PASSed with the
    # old floor of 12; the floor sits under the dimmest tile of PLANT renders (27 in 60 parts)
    min_surface_level: float = Field(
        default=25.0, ge=0.0, le=255.0, description="median of the part surface; below: lamp too dim, no particles"
    )
    max_surface_level: float = Field(
        default=180.0, ge=0.0, le=255.0, description="above: overexposed, flooded or glare"
    )
    max_saturated_fraction: float = Field(
        default=0.01, ge=0.0, le=1.0, description="of a view's pixels at 255 (detail lost to clipping)"
    )
    max_black_fraction: float = Field(
        default=0.6, ge=0.0, le=1.0, description="of a view's pixels at 0-2 (capped lens, dead light)"
    )
    # focus (cellctl.vision.focus): the defaults sit below the sharpest 99 % of PLANT renders,
    # whose blur reaches 1.5 px, and above views blurred by 3 px more, where a 30-grey-level
    # line of 2 px keeps a third of its contrast
    min_head_sharpness: float = Field(
        default=0.36, ge=0.0, le=2.0, description="head frames' silhouette edge slope over the part's contrast"
    )
    min_strip_sharpness: float = Field(
        default=0.26, ge=0.0, le=2.0, description="the strip's silhouette edge slope over the part's contrast"
    )

    # sensor noise (cellctl.vision.noise): the simulator's sensor reads at least 1.77 on every block,
    # a patch blurred 3 px at most 0.21, strip lines averaged 3 at a time at most 0.55
    min_noise: float = Field(
        default=0.8, ge=0.0, le=50.0, description="the least sensor noise a block of the part may show"
    )

    @model_validator(mode="after")
    def verify_levels(self) -> GuardSettings:
        if self.min_surface_level >= self.max_surface_level:
            raise ValueError("min_surface_level must be below max_surface_level")
        return self


class ModelSettings(SettingsModel):
    path: SafePath = Field(description="ONNX file, relative to the profile file")
    sha256: str = Field(pattern=SHA256_PATTERN, description="sha256 of the ONNX file, lower-case hex")


class DecisionSettings(SettingsModel):
    threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="a view with defect probability >= this rejects the part"
    )
    # the grey zone of NDT practice: an indication near the acceptance limit goes to a person
    recheck_threshold: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="a view scoring >= this but below threshold sends the part to RECHECK; unset: no grey zone",
    )

    @model_validator(mode="after")
    def verify_band(self) -> DecisionSettings:
        if self.recheck_threshold is not None and self.recheck_threshold > self.threshold:
            raise ValueError("recheck_threshold must not exceed threshold")
        return self


class SimGeometry(SettingsModel):
    """Nominal dimensions of the part type (millimetres): the located part is checked against
    them, and the simulator renders them."""

    shank_diameter_mm: float = Field(gt=1.0, le=48.0)
    length_mm: float = Field(gt=4.0, le=120.0, description="under-head length")
    thread_length_mm: float = Field(gt=0.0, le=120.0)
    thread_pitch_mm: float = Field(gt=0.2, le=5.0)
    head_across_flats_mm: float = Field(gt=2.0, le=75.0)
    head_height_mm: float = Field(gt=1.0, le=30.0)

    @model_validator(mode="after")
    def verify_thread_fits(self) -> SimGeometry:
        if self.thread_length_mm > self.length_mm:
            raise ValueError("thread_length_mm must not exceed length_mm")
        if self.head_across_flats_mm <= self.shank_diameter_mm:
            raise ValueError("head_across_flats_mm must exceed shank_diameter_mm")
        return self


class PromotionLimits(SettingsModel):
    """What ``cellctl promote`` asks of a model package's held-out figures (every held-out part
    of this profile, its items judged together through the daemon's decision path) before it
    writes the model in here."""

    max_false_reject_rate: float = Field(
        default=0.01, ge=0.0, le=1.0, allow_inf_nan=False, description="good held-out parts judged REJECT, at most"
    )
    max_recheck_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, allow_inf_nan=False, description="held-out parts judged RECHECK, at most"
    )
    min_defective: int = Field(
        default=10, ge=1, le=1_000_000, description="defective held-out parts needed to say 0 escapes means anything"
    )
    speed_tolerance: float = Field(
        default=0.1,
        ge=0.0,
        le=10.0,
        allow_inf_nan=False,
        description="the new INT8 may be this much slower than the model in use (timing noise) and count as as fast",
    )


class PartProfile(SettingsModel):
    schema_version: Literal[1] = 1
    part_number: SafeName
    description: SafeText = ""
    head_positions_deg: list[float] = Field(
        default_factory=lambda: [0.0, 90.0, 180.0, 270.0],
        min_length=1,
        max_length=12,
        description="turntable angles of the head shots, ascending in [0, 360)",
    )
    frame_camera: FrameCameraSettings = Field(default_factory=FrameCameraSettings)
    line_scan: LineScanSettings = Field(default_factory=LineScanSettings)
    lighting: LightingSettings = Field(default_factory=LightingSettings)
    motion: MotionSettings = Field(default_factory=MotionSettings)
    model: ModelSettings
    preprocess: PreprocessSettings
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    optics: OpticsSettings = Field(default_factory=OpticsSettings)
    fixture: FixtureSettings = Field(default_factory=FixtureSettings)
    inspection: InspectionSettings = Field(default_factory=InspectionSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    promotion: PromotionLimits = Field(default_factory=PromotionLimits)
    geometry: SimGeometry

    @field_validator("head_positions_deg")
    @classmethod
    def verify_positions(cls, value: list[float]) -> list[float]:
        if any(not 0.0 <= a < 360.0 for a in value):
            raise ValueError("every angle must be in [0, 360)")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("angles must be strictly ascending")
        return value

    @model_validator(mode="after")
    def verify_tiles_inside_images(self) -> PartProfile:
        side, cam = self.preprocess.head_tile_px, self.frame_camera
        if side > min(cam.width_px, cam.height_px):
            raise FieldError("preprocess.head_tile_px", f"must fit in the {cam.width_px} x {cam.height_px} frame")
        tile, line = self.preprocess.shank_tile_px, self.line_scan
        if tile.axis > line.line_width_px or tile.around > line.lines_per_revolution:
            raise FieldError(
                "preprocess.shank_tile_px", f"must fit in the {line.line_width_px} x {line.lines_per_revolution} strip"
            )
        return self

    @model_validator(mode="after")
    def verify_line_exposure(self) -> PartProfile:
        # the part turns while a line is exposed: longer than one line's period smears every
        # indication around the turn (a crack across the rows fades into the film and is
        # scored clean), and the camera cannot take the next encoder trigger in time
        line, speed = self.line_scan, self.motion.speed_rps
        period_us = 1e6 / (speed * line.lines_per_revolution)
        if line.exposure_us > period_us:
            raise FieldError(
                "line_scan.exposure_us",
                f"{line.exposure_us:g} us is longer than one line at motion.speed_rps {speed:g} and "
                f"{line.lines_per_revolution} lines per revolution ({period_us:.1f} us): each line would "
                f"smear over {line.exposure_us / period_us:.1f} lines around the part; at most {period_us:.1f}",
            )
        return self
