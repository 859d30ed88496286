"""``emulator://`` devices: wire-level emulators on pseudo-terminals, served by ``cellctl sim``.

A cell config may name ``emulator://scl`` for the stage and ``emulator://gardasoft`` for the
lighting. ``cellctl sim`` then starts the matching emulator on a pty, coupled to the
simulated world (the drive turns the encoder, the controller sets the UV light), and hands
the cell the production serial driver on that pty: ``serial:///dev/pts/N``. Only the URL
differs from a real cell. Options: ``emulator://scl?steps_per_rev=20000``.

With ``link_dir`` the driver gets a stable link instead (``link_dir/scl-drive``,
``link_dir/gardasoft``), as ``/dev/serial/by-id`` gives a real cell: an emulator that is
unplugged and plugged again (fault injection) or restarted with a new daemon keeps its path.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cellctl.config import CellConfig, ConfigError, Problem
from cellctl.drivers import DeviceUrl
from cellctl.sim.gardasoft import GardasoftEmulator
from cellctl.sim.scl_drive import SclDriveEmulator
from cellctl.sim.world import SimWorld

SCHEME = "emulator"


async def _scl(world: SimWorld, url: DeviceUrl, link_dir: Path | None) -> tuple[Any, str]:
    steps = int(url.options.get("steps_per_rev", "20000"))
    emulator = SclDriveEmulator(world, steps_per_rev=steps, link_dir=link_dir)
    return emulator, f"serial://{await emulator.start()}?steps_per_rev={steps}"


async def _gardasoft(world: SimWorld, url: DeviceUrl, link_dir: Path | None) -> tuple[Any, str]:
    emulator = GardasoftEmulator(world, link_dir=link_dir)
    return emulator, f"serial://{await emulator.start()}"


EMULATORS = {("stage", "scl"): _scl, ("lighting", "gardasoft"): _gardasoft}


async def serve_emulated(
    cell: CellConfig,
    world: SimWorld,
    stack: contextlib.AsyncExitStack,
    *,
    link_dir: Path | None = None,
    emulators: dict[str, Any] | None = None,
) -> CellConfig:
    """Start an emulator for every ``emulator://`` device; the config with their pty URLs.
    ``emulators`` (if given) receives each emulator by device name, for fault injection."""
    updates = {}
    for name in ("frame_camera", "line_camera", "stage", "lighting"):
        device = getattr(cell.devices, name)
        url = DeviceUrl.parse(device.url)
        if url.scheme != SCHEME:
            continue
        start = EMULATORS.get((name, url.location))
        if start is None:
            known = ", ".join(f"{d}: emulator://{k}" for d, k in EMULATORS)
            raise ConfigError(
                [
                    Problem(
                        "cell config",
                        0,
                        f"devices.{name}.url",
                        f"no emulator {device.url!r} for {name} (have: {known})",
                    )
                ]
            )
        emulator, served = await start(world, url, link_dir)
        stack.push_async_callback(emulator.close)
        if emulators is not None:
            emulators[name] = emulator
        updates[name] = device.model_copy(update={"url": served})
    return cell.model_copy(update={"devices": cell.devices.model_copy(update=updates)})
