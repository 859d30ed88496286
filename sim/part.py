"""A simulated fastener: its indications (true defects) and harmless particle deposits.

Positions are on the part surface, so every view of the same part agrees:
``azimuth_deg`` around the axis, ``z_mm`` from the top of the head (head region) or from
under the head along the shank (shank region).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from cellctl.config import SimGeometry

Region = Literal["head", "shank"]
IndicationKind = Literal["crack", "seam", "mark"]


@dataclass(frozen=True)
class Indication:
    """A true MPI indication: a sharp, bright, thin particle line or spot over a defect."""

    kind: IndicationKind
    region: Region
    azimuth_deg: float
    z_mm: float
    length_mm: float
    angle_deg: float  # 0 = along the circumference, 90 = along the axis
    width_px: int
    brightness: float  # added intensity, 8-bit units
    jitter: tuple[float, ...]  # perpendicular wiggle of the crack path, mm


@dataclass(frozen=True)
class Deposit:
    """Harmless particle build-up: a soft, dimmer blob or streak that can look like a defect."""

    region: Region
    azimuth_deg: float
    z_mm: float
    sigma_along_mm: float
    sigma_across_mm: float
    angle_deg: float
    brightness: float


@dataclass(frozen=True)
class SimPart:
    part_id: str
    geometry: SimGeometry
    surface_level: float  # fluorescent background of the wetted surface, 8-bit units
    indications: tuple[Indication, ...]
    deposits: tuple[Deposit, ...]
    seed: int = 0
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def defective(self) -> bool:
        return bool(self.indications)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; ``from_json`` gives an equal part (the fixture channel to a child daemon)."""
        data = asdict(self)
        data["geometry"] = self.geometry.model_dump()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimPart:
        return cls(
            part_id=str(data["part_id"]),
            geometry=SimGeometry.model_validate(data["geometry"]),
            surface_level=float(data["surface_level"]),
            indications=tuple(Indication(**{**i, "jitter": tuple(i["jitter"])}) for i in data["indications"]),
            deposits=tuple(Deposit(**d) for d in data["deposits"]),
            seed=int(data["seed"]),
            notes={str(k): str(v) for k, v in data.get("notes", {}).items()},
        )


def sample_part(rng: np.random.Generator, geometry: SimGeometry, part_id: str, defective: bool) -> SimPart:
    """Draw a part: 1-3 indications when defective (shank twice as likely as head, as seen in
    the plant), 6-16 deposits always."""
    indications = tuple(_indication(rng, geometry) for _ in range(rng.integers(1, 4))) if defective else ()
    deposits = tuple(_deposit(rng, geometry) for _ in range(rng.integers(6, 17)))
    return SimPart(
        part_id=part_id,
        geometry=geometry,
        surface_level=float(rng.uniform(38.0, 58.0)),
        indications=indications,
        deposits=deposits,
        seed=int(rng.integers(0, 2**31)),
    )


def _indication(rng: np.random.Generator, g: SimGeometry) -> Indication:
    region: Region = "head" if rng.random() < 1 / 3 else "shank"
    kind: IndicationKind = (
        rng.choice(["crack", "crack", "seam", "mark"]) if region == "shank" else rng.choice(["crack", "crack", "mark"])
    )
    if region == "head":
        # on the head flank or in the under-head fillet, where forging and quench cracks start
        z = rng.uniform(0.6, g.head_height_mm + 0.8)
        max_len = min(4.0, g.head_height_mm * 0.9)
    else:
        z = rng.uniform(1.0, g.length_mm - 1.0)
        max_len = 8.0
    if kind == "mark":
        length, width, angle = rng.uniform(0.4, 0.9), int(rng.integers(3, 5)), rng.uniform(0, 180)
    elif kind == "seam":
        length, width, angle = rng.uniform(4.0, max_len), 2, rng.uniform(80, 100)
    else:
        length, width, angle = rng.uniform(1.2, max_len), int(rng.integers(2, 4)), rng.uniform(0, 180)
    return Indication(
        kind=str(kind),  # type: ignore[arg-type]
        region=region,
        azimuth_deg=rng.uniform(0, 360),
        z_mm=z,
        length_mm=length,
        angle_deg=angle,
        width_px=width,
        brightness=rng.uniform(130.0, 200.0),
        jitter=tuple(rng.normal(0.0, 0.05, size=6)),
    )


def _deposit(rng: np.random.Generator, g: SimGeometry) -> Deposit:
    region: Region = "head" if rng.random() < 0.35 else "shank"
    z_max = g.head_height_mm + 0.8 if region == "head" else g.length_mm
    streak = rng.random() < 0.4
    along = rng.uniform(0.4, 1.4) if streak else rng.uniform(0.15, 0.5)
    across = rng.uniform(0.12, 0.25) if streak else along * rng.uniform(0.6, 1.0)
    return Deposit(
        region=region,
        azimuth_deg=rng.uniform(0, 360),
        z_mm=rng.uniform(0.2, z_max),
        sigma_along_mm=along,
        sigma_across_mm=across,
        angle_deg=rng.uniform(0, 180),
        brightness=rng.uniform(20.0, 55.0),
    )
