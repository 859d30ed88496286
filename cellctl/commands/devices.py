"""``cellctl devices``: what the cell config can reach, for wiring a new cell.

GenICam cameras found through each configured producer (and whether the configured serial or
user name matches one), and each configured device's identity and state after a connect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from cellctl.commands.common import embedded_config
from cellctl.commands.common import report as report_problems
from cellctl.config import CellConfig, ConfigError, read_yaml, validate
from cellctl.config.preflight import verify_devices
from cellctl.drivers import CellError, DeviceUrl
from cellctl.drivers.camera import FRAME_CAMERAS, LINE_CAMERAS
from cellctl.drivers.lighting import LIGHTS
from cellctl.drivers.stage import STAGES
from cellctl.text import printable

REGISTRIES = {"frame_camera": FRAME_CAMERAS, "line_camera": LINE_CAMERAS, "stage": STAGES, "lighting": LIGHTS}


class NoProducer(Exception):
    """The file given as a GenTL producer loaded none: its message is the one line shown."""


async def list_producer(cti: str) -> list[dict[str, Any]]:
    """The devices the producer ``cti`` finds; NoProducer if harvesters loaded no producer
    from it (it skips a file that is no GenTL library, a text or an empty file, silently)."""
    from cellctl.drivers.camera.gentl import ProducerHost  # harvesters only when asked for

    host = ProducerHost(cti)
    host.users += 1
    try:
        devices: list[dict[str, Any]] = await host.run(host.devices)
        loaded = await host.run(lambda: _producers_loaded(host.harvester))
    finally:
        await host.release()
    if loaded == 0:
        raise NoProducer(f"{cti}: loaded no GenTL producer from this file (not a GenTL .cti library?)")
    return devices


def _producers_loaded(harvester: Any) -> int | None:
    """How many producers harvesters loaded (None if this version does not tell)."""
    producers = getattr(harvester, "_producers", None)  # harvesters has no public count
    return None if producers is None else len(producers)


async def probe(name: str, url: str, timeout_s: float) -> dict[str, Any]:
    """Connect one configured device, report what it says about itself, close it."""
    entry: dict[str, Any] = {"device": name, "url": url}
    parsed = DeviceUrl.parse(url)
    if parsed.scheme == "emulator":
        entry["state"] = "emulated"  # started by `cellctl sim` on a pty; nothing to reach here
        return entry
    if parsed.scheme == "gentl":
        try:
            cameras = await list_producer(parsed.location)
        except NoProducer as exc:
            entry["state"] = f"error: {exc}"
            return entry
        except Exception as exc:  # noqa: BLE001 - harvesters / genicam raise their own types for a bad producer
            entry["state"] = f"error: cannot load producer {parsed.location}: {' '.join(str(exc).split())}"
            return entry
        wanted = parsed.options.get("serial"), parsed.options.get("user_name")
        entry["cameras"] = cameras
        entry["matched"] = [
            c for c in cameras if c["serial"] == wanted[0] or (wanted[1] and c["user_name"] == wanted[1])
        ]
        entry["state"] = "found" if len(entry["matched"]) == 1 else "not found"
        return entry
    try:
        device = REGISTRIES[name].create(url, context={})
    except CellError as exc:
        entry["state"] = f"error: {exc}"
        return entry
    try:
        await device.connect(timeout_s)  # the driver owns the deadline
        entry["identity"] = device.health().get("identity")
        entry["state"] = "connected"
    except CellError as exc:
        entry["state"] = f"error: {exc}"
    finally:
        await device.close()  # bounded by the driver, never raises
    return entry


async def survey(cell: CellConfig) -> list[dict[str, Any]]:
    devices = cell.devices
    urls = {
        "frame_camera": devices.frame_camera.url,
        "line_camera": devices.line_camera.url,
        "stage": devices.stage.url,
        "lighting": devices.lighting.url,
    }
    return [await probe(name, url, cell.timeouts.connect_s) for name, url in urls.items()]


def main(args: argparse.Namespace) -> int:
    if args.cti is not None:
        try:
            report: Any = {"producer": str(args.cti), "cameras": asyncio.run(list_producer(str(args.cti)))}
        except NoProducer as exc:
            print(f"error: {printable(str(exc))}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - harvesters / genicam raise their own types for a bad producer
            print(f"error: cannot load GenTL producer {args.cti}: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
    else:
        config = args.config or embedded_config()
        try:  # the URLs must name known backends with valid options before anything connects
            data = read_yaml(config)
            cell = validate(CellConfig, data, config)
            problems = verify_devices(config, data, cell, allow_emulated=True)
            if problems:
                raise ConfigError(problems)
        except ConfigError as exc:
            report_problems(exc)
            return 2
        report = asyncio.run(survey(cell))
    if args.json:
        print(json.dumps(report))
        return 0
    rows = report["cameras"] if args.cti is not None else report
    if args.cti is not None:
        print(f"producer {args.cti}")
        for c in rows:
            print(
                f"  {c['vendor']} {c['model']}  serial={c['serial']}  user_name={c['user_name']}  "
                f"access={c['access_status']}"
            )
        return 0
    failed = 0
    for entry in rows:
        print(f"{entry['device']:<13} {entry['url']:<40} {entry['state']}")
        for c in entry.get("cameras", []):
            print(f"    {c['vendor']} {c['model']}  serial={c['serial']}  user_name={c['user_name']}")
        if entry.get("identity"):
            print(f"    identity: {entry['identity']}")
        failed += entry["state"] not in ("connected", "found", "emulated")
    return 1 if failed else 0
