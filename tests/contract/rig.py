"""A device of one kind on one backend, for the contract suites: the in-process ``sim``
backend, or the production serial driver on its wire-level emulator's pty; both coupled to a
fresh world at time scale 0."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellctl.drivers import BackendRegistry
from cellctl.sim.world import WORLD_KEY, SimWorld


@dataclass
class Rig:
    make: Callable[[], Any]  # a new, unconnected device on the same backend and world
    device: Any  # connected
    world: SimWorld


@contextlib.asynccontextmanager
async def rig(
    registry: BackendRegistry, emulator_type: Any, url_options: str, backend: str, folder: Path, timeout_s: float
) -> AsyncIterator[Rig]:
    """``backend`` "sim", or anything else for the serial driver on ``emulator_type``'s pty."""
    world = SimWorld(time_scale=0.0)
    emulator = None
    if backend == "sim":
        url = "sim://?time_scale=0"
    else:
        emulator = emulator_type(world=world, link_dir=folder)
        url = f"serial://{await emulator.start()}{url_options}"
    made: list[Any] = []

    def make() -> Any:
        made.append(registry.create(url, context={WORLD_KEY: world}))
        return made[-1]

    device = make()
    try:
        await device.connect(timeout_s)
        yield Rig(make, device, world)
    finally:
        for each in made:
            await each.close()
        if emulator is not None:
            await emulator.close()
