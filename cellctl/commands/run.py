"""``cellctl run --config CELL.yaml``: the inspection daemon, until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import structlog

from cellctl.app import Cell
from cellctl.commands.common import report
from cellctl.config import (
    CellConfig,
    ConfigError,
    Problem,
    ResolvedProfile,
    cell_relative,
    line_of,
    load_cell,
    load_profiles,
    read_yaml,
)
from cellctl.devices import NotConnected
from cellctl.drivers import DriverInitError
from cellctl.logs import configure

log = structlog.get_logger("cellctl.run")


def _refuse_emulated(path: Path, cell_cfg: CellConfig) -> None:
    """emulator:// devices exist only inside `cellctl sim`; say how to run them under `run`."""
    data = read_yaml(path)
    problems = [
        Problem(str(path), line_of(data, f"devices.{name}.url"), f"devices.{name}.url",
                "emulator:// is served by `cellctl sim` only; for `cellctl run` start "
                "`python -m cellctl.sim.scl_drive` / `python -m cellctl.sim.gardasoft` and use "
                "serial://<the printed pty path>")
        for name in ("frame_camera", "line_camera", "stage", "lighting")
        if getattr(cell_cfg.devices, name).url.startswith("emulator://")
    ]
    if problems:
        raise ConfigError(problems)


async def _serve(cell_cfg: CellConfig, profiles: dict[str, ResolvedProfile], records: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Cell(cell_cfg, profiles, records) as cell:
        await cell.run(stop)
    return 0


def main(args: argparse.Namespace) -> int:
    # config, profiles and model hashes are read before the event loop starts
    try:
        cell_cfg = load_cell(args.config)
        _refuse_emulated(args.config, cell_cfg)
        configure(cell_cfg.log_format, args.log_level or "info")
        profiles = load_profiles(args.config, cell_cfg)
    except ConfigError as exc:
        report(exc)
        return 2
    records = cell_relative(args.config, cell_cfg.storage.records_db)
    try:
        return asyncio.run(_serve(cell_cfg, profiles, records))
    except (NotConnected, DriverInitError) as exc:
        log.error("cell.start_failed", error=str(exc))
        return 3
