"""``cellctl check FILE...``: validate cell configs and part profiles, one line per problem.

A cell config gets the same preflight as `cellctl run` (devices, producers, models, records
database); only its ``emulator://`` devices are accepted, since `cellctl sim` serves them.
A profile on its own is validated and its model loaded and checked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cellctl.commands.common import report
from cellctl.config import (
    ConfigError,
    document_kind,
    emulated_devices,
    preflight,
    read_yaml,
    resolve_profile,
    verify_models,
)


def check_one(path: Path) -> str:
    """What ``path`` is, if valid (``"profile"``, ``"cell config (2 profiles)"``); else ConfigError."""
    if document_kind(read_yaml(path)) == "profile":
        rp = resolve_profile(path)
        problems = verify_models([rp])
        if problems:
            raise ConfigError(problems)
        return "profile"
    cell, profiles = preflight(path, allow_emulated=True)
    kind = f"cell config ({len(profiles)} profiles)"
    if emulated_devices(cell):
        kind += f" (emulator:// devices {', '.join(emulated_devices(cell))}: served by `cellctl sim` only)"
    return kind


def main(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            kind = check_one(path)
        except ConfigError as exc:
            failed += 1
            report(exc)
            continue
        print(f"ok: {path}: {kind}")
    return 1 if failed else 0
