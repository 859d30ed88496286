"""``cellctl devices``: what the cell config can reach, for wiring a new cell.

GenICam cameras found through each configured producer (and whether the configured serial or
user name matches one), and each configured device's identity and state after a connect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from cellctl.commands.common import embedded_config
from cellctl.config import CellConfig, load_cell
from cellctl.drivers import CellError, DeviceUrl
from cellctl.drivers.camera import FRAME_CAMERAS, LINE_CAMERAS
from cellctl.drivers.lighting import LIGHTS
from cellctl.drivers.stage import STAGES

REGISTRIES = {"frame_camera": FRAME_CAMERAS, "line_camera": LINE_CAMERAS, "stage": STAGES, "lighting": LIGHTS}


async def list_producer(cti: str) -> list[dict[str, Any]]:
    from cellctl.drivers.camera.gentl import list_devices  # harvesters only when asked for

    return await list_devices(cti)


async def probe(name: str, url: str, timeout_s: float) -> dict[str, Any]:
    """Connect one configured device, report what it says about itself, close it."""
    entry: dict[str, Any] = {"device": name, "url": url}
    parsed = DeviceUrl.parse(url)
    if parsed.scheme == "emulator":
        entry["state"] = "emulated"  # started by `cellctl sim` on a pty; nothing to reach here
        return entry
    if parsed.scheme == "gentl":
        cameras = await list_producer(parsed.location)
        wanted = parsed.options.get("serial"), parsed.options.get("user_name")
        entry["cameras"] = cameras
        entry["matched"] = [c for c in cameras if c["serial"] == wanted[0] or (wanted[1] and c["user_name"] == wanted[1])]
        entry["state"] = "found" if len(entry["matched"]) == 1 else "not found"
        return entry
    try:
        device = REGISTRIES[name].create(url, context={})
        await asyncio.wait_for(device.connect(timeout_s), timeout_s)
        entry["identity"] = getattr(device, "identity", None) or ("simulated" if parsed.scheme == "sim" else None)
        entry["state"] = "connected"
        await device.close()
    except (CellError, TimeoutError, OSError) as exc:
        entry["state"] = f"error: {exc}"
    return entry


async def survey(cell: CellConfig) -> list[dict[str, Any]]:
    devices = cell.devices
    urls = {"frame_camera": devices.frame_camera.url, "line_camera": devices.line_camera.url,
            "stage": devices.stage.url, "lighting": devices.lighting.url}
    return [await probe(name, url, cell.timeouts.connect_s) for name, url in urls.items()]


def main(args: argparse.Namespace) -> int:
    if args.cti is not None:
        report: Any = {"producer": str(args.cti), "cameras": asyncio.run(list_producer(str(args.cti)))}
    else:
        report = asyncio.run(survey(load_cell(args.config or embedded_config())))
    if args.json:
        print(json.dumps(report))
        return 0
    rows = report["cameras"] if args.cti is not None else report
    if args.cti is not None:
        print(f"producer {args.cti}")
        for c in rows:
            print(f"  {c['vendor']} {c['model']}  serial={c['serial']}  user_name={c['user_name']}  "
                  f"access={c['access_status']}")
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


