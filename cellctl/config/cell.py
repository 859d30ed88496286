"""Cell config: the wiring of one cell (devices, robot link, storage, timeouts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cellctl.drivers import DeviceUrl, SettingsModel
from cellctl.link.keys import z85_key_problem
from cellctl.text import SafeName, SafePath


class DeviceSettings(SettingsModel):
    url: SafePath = Field(description="backend URL, e.g. sim://; scheme and options are checked by preflight")

    @field_validator("url")
    @classmethod
    def verify_url(cls, value: str) -> str:
        DeviceUrl.parse(value)
        return value


class StageDevice(DeviceSettings):
    encoder_counts_per_rev: int = Field(
        default=8192, ge=64, le=1_048_576, description="encoder edges per turntable revolution"
    )


class Devices(SettingsModel):
    frame_camera: DeviceSettings = Field(default_factory=lambda: DeviceSettings(url="sim://"))
    line_camera: DeviceSettings = Field(default_factory=lambda: DeviceSettings(url="sim://"))
    stage: StageDevice = Field(default_factory=lambda: StageDevice(url="sim://"))
    lighting: DeviceSettings = Field(default_factory=lambda: DeviceSettings(url="sim://"))


class RobotLinkSettings(SettingsModel):
    """The cell's end of the robot link (README, "Robot link")."""

    endpoint: SafePath = Field(
        default="tcp://127.0.0.1:5560",
        pattern=r"^(tcp|ipc)://",
        description="ZeroMQ endpoint of the robot bridge (the bridge binds, the cell connects)",
    )
    security: Literal["curve", "none"] = Field(
        default="curve", description="curve: encrypted, both ends authenticated; none: a warning at every start"
    )
    bridge_public_key: str | None = Field(
        default=None, description="the bridge's CURVE public key (Z85, 40 characters); required with curve"
    )
    secret_key_file: SafePath = Field(
        default="cell.key_secret",
        description="the cell's ZeroMQ certificate with its secret key, relative to the config file; "
        "$CREDENTIALS_DIRECTORY/<same name> first when set",
    )
    heartbeat_s: float = Field(default=1.0, gt=0.0, le=60.0, description="heartbeat period, both ways")
    missed_beats: int = Field(
        default=3, ge=2, le=100, description="down after this many heartbeat periods without a message"
    )
    ack_timeout_s: float = Field(default=1.0, gt=0.0, le=60.0, description="first resend after this")
    ack_backoff_max_s: float = Field(default=8.0, gt=0.0, le=600.0, description="resend interval doubles up to this")
    delivery_deadline_s: float = Field(
        default=30.0, gt=0.0, le=3600.0, description="then the verdict is expired (and resent at reconnection)"
    )
    window: int = Field(default=8, ge=1, le=1000, description="verdicts in flight at most")

    @field_validator("bridge_public_key")
    @classmethod
    def verify_key(cls, value: str | None) -> str | None:
        problem = None if value is None else z85_key_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def verify_backoff(self) -> RobotLinkSettings:
        if self.ack_backoff_max_s < self.ack_timeout_s:
            raise ValueError(
                f"ack_backoff_max_s ({self.ack_backoff_max_s:g}) is below ack_timeout_s ({self.ack_timeout_s:g})"
            )
        return self


RobotLink = RobotLinkSettings  # the name this model had before the link client took it


class Timeouts(SettingsModel):
    """Every step of the cycle has its own limit; a step over it makes the part RECHECK."""

    connect_s: float = Field(default=10.0, gt=0.0, le=300.0, description="connecting and starting each device")
    configure_s: float = Field(default=5.0, gt=0.0, le=120.0, description="applying a profile to each device")
    home_s: float = Field(default=10.0, gt=0.0, le=120.0, description="homing the turntable")
    light_s: float = Field(default=1.0, gt=0.0, le=60.0)
    move_s: float = Field(default=5.0, gt=0.0, le=120.0, description="one head-position move")
    frame_s: float = Field(default=2.0, gt=0.0, le=60.0, description="one head frame")
    strip_s: float = Field(default=5.0, gt=0.0, le=120.0, description="the line-scan strip after the revolution")
    inference_s: float = Field(default=5.0, gt=0.0, le=120.0, description="preprocess + infer all views")


class CaptureSettings(SettingsModel):
    """The capture store of the learning loop (README, "Learning loop"): the parts whose views
    teach a retrained student most, kept on disk within a budget, oldest dropped first."""

    dir: SafePath = Field(
        default="/var/lib/cellctl/captures", description="folder of the store, relative to the config file"
    )
    budget_mb: float = Field(
        default=2048.0, gt=0.0, le=10_000_000.0, allow_inf_nan=False, description="disk the store may use, MB"
    )
    score_band: float = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="capture a part with a view scored within this of the profile's threshold",
    )
    sample_fraction: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="share of the other PASS and REJECT parts kept as a random sample",
    )


class Storage(SettingsModel):
    records_db: SafePath = Field(
        default="/var/lib/cellctl/records.db", description="SQLite file, relative to the config file"
    )
    captures: CaptureSettings | None = Field(
        default=None, description="the learning loop's capture store; absent or null: no captures"
    )


class CellConfig(SettingsModel):
    schema_version: Literal[1] = 1
    cell_id: Annotated[SafeName, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "cell-01"
    profiles_dir: SafePath = Field(default=".", description="folder of part profiles, relative to the config file")
    default_profile: SafeName = Field(default="m8x40-hex", description="profile used when a request names none")
    devices: Devices = Field(default_factory=Devices)
    robot: RobotLinkSettings = Field(default_factory=RobotLinkSettings)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    storage: Storage = Field(default_factory=Storage)
    inference_threads: int = Field(default=2, ge=1, le=64, description="onnxruntime intra-op threads")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise"
    )
