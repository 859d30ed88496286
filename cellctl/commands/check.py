"""``cellctl check FILE...``: validate cell configs and part profiles, one line per problem."""

from __future__ import annotations

import argparse

from cellctl.commands.common import report
from cellctl.config import ConfigError, is_profile_file, load_cell, load_profiles, resolve_profile


def main(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            if is_profile_file(path):
                resolve_profile(path)
                kind = "profile"
            else:
                cell = load_cell(path)
                profiles = load_profiles(path, cell)
                kind = f"cell config ({len(profiles)} profiles)"
        except ConfigError as exc:
            failed += 1
            report(exc)
            continue
        print(f"ok: {path}: {kind}")
    return 1 if failed else 0
