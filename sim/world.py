"""The shared physical state of one simulated cell: fixture, turntable angle, UV light, clock.

Simulated devices of one cell find the same world in the device context the composition root
hands to every backend (``context["sim.world"]``), so the camera sees the part the robot
placed, lit by the light that is on, and the line-scan camera is clocked by the turntable's
encoder: the couplings that are wires and physics in the real cell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cellctl.drivers import DeviceUrl
from cellctl.sim.part import SimPart
from cellctl.sim.scene import Renderer

WORLD_KEY = "sim.world"


class SimClock:
    """Mechanical and transfer delays scaled by ``time_scale`` (1 = real time, 0 = none)."""

    def __init__(self, time_scale: float) -> None:
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        self.time_scale = time_scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.time_scale)


@dataclass
class Faults:
    """Fault injection for tests and demos: what the next operations should suffer."""

    frame_timeouts: int = 0  # the next N head frames never arrive (lost / incomplete buffers)
    strip_timeouts: int = 0  # the next N strips never complete
    stage_stall: bool = False  # the turntable stops answering
    light_dead: bool = False  # the controller answers, the LEDs stay dark
    stage_alarm_bits: int = 0  # the next move of the SCL emulator stops halfway with these AL bits
    frame_disconnects: int = 0  # the next N head triggers find the camera gone (DriverIOError)
    incomplete_frames: int = 0  # the next N head frames arrive short (Frame.complete False)
    configure_refusals: int = 0  # the next N frame-camera configure() calls are refused


@dataclass
class SimWorld:
    seed: int = 0
    time_scale: float = 0.0
    encoder_counts_per_rev: int = 8192
    renderer: Renderer = field(init=False)
    clock: SimClock = field(init=False)
    fixture: SimPart | None = None
    light_gain: float = 0.0  # relative UV irradiance at the part, 0 = off
    encoder_count: int = 0
    faults: Faults = field(default_factory=Faults)
    _encoder_listeners: list[Callable[[int], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.renderer = Renderer(self.seed)
        self.clock = SimClock(self.time_scale)

    @property
    def angle_deg(self) -> float:
        return (self.encoder_count % self.encoder_counts_per_rev) * 360.0 / self.encoder_counts_per_rev

    def on_encoder(self, listener: Callable[[int], None]) -> None:
        """``listener(delta)`` is called with every forward step of the encoder."""
        self._encoder_listeners.append(listener)

    def advance_encoder(self, delta: int) -> None:
        self.encoder_count += delta
        for listener in self._encoder_listeners:
            listener(delta)


def world_from(context: dict[str, Any], url: DeviceUrl) -> SimWorld:
    """The cell's world; made from the URL options (``sim://?seed=1&time_scale=0``) if absent."""
    world = context.get(WORLD_KEY)
    if world is None:
        world = SimWorld(seed=int(url.options.get("seed", 0)), time_scale=float(url.options.get("time_scale", 1.0)))
        context[WORLD_KEY] = world
    return world
