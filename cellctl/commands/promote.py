"""``cellctl promote PACKAGE --profile NAME``: the deployment gate (cellctl/promotion.py).

Prints every check with PASS or FAIL and its figures, then either the profile it rewrote or
that it refused. Only light imports at module level: ``cellctl`` builds its parser from
``add_parser``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cellctl.commands.args import existing_dir, existing_file, positive_int


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:  # Any: cli's parser is a subclass
    p = sub.add_parser(
        "promote",
        help="write a model package's INT8 model into a profile only if its held-out figures and its speed "
        "pass the profile's promotion limits",
    )
    p.add_argument("package", type=existing_dir, metavar="PACKAGE", help="a model package of `cellctl train`")
    p.add_argument("--profile", required=True, metavar="NAME", help="profile name or YAML path to promote it into")
    p.add_argument(
        "--config", type=existing_file, default=None, metavar="FILE", help="cell config whose profiles_dir holds it"
    )
    p.add_argument(
        "--rounds", type=positive_int, default=20, help="timed rounds of each model, interleaved (default 20)"
    )
    p.add_argument("--dry-run", action="store_true", help="judge and time only; write nothing")
    p.add_argument("--json", action="store_true", help="print the checks and figures as one JSON object")


def main(args: argparse.Namespace) -> int:
    from cellctl.commands.common import find_profile, report
    from cellctl.config import ConfigError
    from cellctl.drivers import DriverInitError
    from cellctl.promotion import NotPromotable, candidate_sha, judge, promote, read_card, time_against

    try:
        rp, cell, _ = find_profile(args.profile, args.config)
        card = read_card(args.package)
    except ConfigError as exc:
        report(exc)
        return 2
    except NotPromotable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdict = judge(card, rp)
    sha = candidate_sha(args.package, card, verdict)
    if sha is not None and not verdict.failed:  # timing a model that fails anyway tells nothing
        try:
            time_against(rp, args.package / "student-int8.onnx", cell.inference_threads, args.rounds, verdict)
        except (DriverInitError, OSError) as exc:
            verdict.check(False, f"the INT8 model cannot be timed: {exc}")
    written = None
    if not verdict.failed and not args.dry_run and sha is not None:
        try:
            written = promote(rp, args.package, sha)
        except (ConfigError, OSError) as exc:
            verdict.check(False, f"the rewritten profile does not load, the old one is back: {exc}")
    result = {
        "profile": str(rp.path),
        "package": str(args.package),
        "promoted": written is not None,
        "model": str(written) if written else None,
        "sha256": sha,
        "passed": verdict.passed,
        "failed": verdict.failed,
        "figures": verdict.figures,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for line in verdict.passed:
            print(f"PASS  {line}")
        for line in verdict.failed:
            print(f"FAIL  {line}")
        if written is not None:
            print(f"promoted: {rp.path} now runs {written.name} (sha256 {sha}); the previous model file is kept")
        elif args.dry_run and not verdict.failed:
            print("would promote (dry run: nothing written)")
    if verdict.failed:
        print(f"error: refused: {len(verdict.failed)} check(s) failed; {rp.path} is unchanged", file=sys.stderr)
        return 1
    return 0
