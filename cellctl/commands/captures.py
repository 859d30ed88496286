"""``cellctl captures``: the learning loop's capture store, for a quality engineer.

``cellctl captures export OUT [--config CELL.yaml | --store DIR] [--since T]`` writes the
kept parts under ``OUT/{parts,head,shank}/unlabelled/`` (cellctl/captures/export.py) and
prints what it wrote as one JSON object. Read-only on the store: the daemon may be running
(a capture appears in the store only when whole). Only light imports at module level:
``cellctl`` builds its parser from ``add_parser``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


class NoStore(Exception):
    """Where the store should be, there is none: the message is the one line shown."""


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:  # Any: cli's parser is a subclass
    from cellctl.commands.args import existing_dir, existing_file, output_dir, since_time

    p = sub.add_parser("captures", help="the learning loop's capture store: export kept parts for labelling")
    actions = p.add_subparsers(dest="captures_command", metavar="ACTION", required=True)
    e = actions.add_parser(
        "export",
        help="write the kept parts in the eval layout under OUT/{parts,head,shank}/unlabelled/, "
        "the cell's scores and reason beside each image",
    )
    e.add_argument("out", type=output_dir, metavar="OUT", help="folder to write into (created if missing)")
    where = e.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=existing_file,
        default=None,
        help="cell config whose storage.captures.dir to read (default /etc/cellctl/cell.yaml)",
    )
    where.add_argument("--store", type=existing_dir, default=None, help="the capture store folder itself")
    e.add_argument(
        "--since",
        type=since_time,
        default=None,
        metavar="T",
        help="only parts captured at or after T: ISO 8601 (UTC unless it names an offset) or an age (30m, 12h, 7d)",
    )


def main(args: argparse.Namespace) -> int:
    from cellctl.captures.export import export_captures
    from cellctl.commands.common import NoCellConfig, report
    from cellctl.config import ConfigError
    from cellctl.text import printable

    try:
        store = store_path(args)
    except ConfigError as exc:
        report(exc)
        return 2
    except (NoStore, NoCellConfig) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    counts = export_captures(store, args.out, args.since)
    print(json.dumps({"store": str(store), "out": str(args.out), **dict(sorted(counts.items()))}))
    if not counts.get("parts/unlabelled"):
        since = f" since {args.since.isoformat()}" if args.since else ""
        print(f"error: {store}: no capture{since} to export", file=sys.stderr)
        return 1
    return 0


def store_path(args: argparse.Namespace) -> Path:
    if args.store is not None:
        return Path(args.store)
    from cellctl.commands.common import installed_cell
    from cellctl.config import cell_relative

    config, cell = installed_cell(args.config, "--store")
    if cell.storage.captures is None:
        raise NoStore(f"{config}: storage.captures is not set: this cell keeps no captures")
    store = cell_relative(config, cell.storage.captures.dir)
    if not store.is_dir():
        raise NoStore(f"{store}: no capture store yet (the daemon creates it when it starts with captures on)")
    return store
