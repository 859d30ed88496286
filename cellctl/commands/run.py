"""``cellctl run --config CELL.yaml``: the inspection daemon, until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import structlog

from cellctl.app import Cell
from cellctl.cli import EXIT_INTERNAL
from cellctl.commands.common import report
from cellctl.config import CellConfig, ConfigError, ResolvedProfile, cell_relative, preflight
from cellctl.drivers import CellError
from cellctl.logs import configure

log = structlog.get_logger("cellctl.run")


async def _serve(cell_cfg: CellConfig, profiles: dict[str, ResolvedProfile], records: Path, config_path: Path) -> int:
    stop = asyncio.Event()
    cell = Cell(cell_cfg, profiles, records, config_path=config_path)
    # signals first: a SIGTERM during the start still stops the cell cleanly once it is up
    with cell.signals(stop):
        async with cell:
            await cell.run(stop)
    return 0


def main(args: argparse.Namespace) -> int:
    # config, profiles and model hashes are read before the event loop starts
    try:
        # the same preflight as `cellctl check` (emulator:// refused: only `cellctl sim` serves it)
        cell_cfg, profiles = preflight(args.config, allow_emulated=False)
        configure(cell_cfg.log_format, args.log_level or "info")
    except ConfigError as exc:
        report(exc)
        return 2
    records = cell_relative(args.config, cell_cfg.storage.records_db)
    try:
        return asyncio.run(_serve(cell_cfg, profiles, records, args.config))
    except CellError as exc:  # a device that did not connect or refused its setup, unusable records or captures
        log.error("cell.start_failed", error=str(exc))
        return 3
    except Exception as exc:
        # a bug that got past every per-part guard: the journal gets the traceback as one JSON
        # event, the light is already off (the cell's exit stack ran), systemd restarts us
        log.critical("cell.crashed", error=f"{type(exc).__name__}: {exc}", exc_info=True)
        return EXIT_INTERNAL
