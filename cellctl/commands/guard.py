"""``cellctl guard MODEL OUT --fit DIR --holdout DIR --profile NAME``: add the OOD guard.

Fits the out-of-distribution guard (cellctl.ood) of a model on labelled views and writes the
model with it as its output ``ood_score``, its threshold and how it was set in the model's
metadata. The images of DIR/{head,shank}/{good,defect}/ are used, each turned into the views
the daemon would score: the guard says whether a view looks like what the model was trained
on (good surfaces and indications alike), so it can veto a PASS; it never turns a defect
score into anything but a REJECT (cellctl.decision). The mean and covariance come
from the --fit views; the threshold from the --holdout views (other parts, never fitted on):
at most --false-alarm-rate of them score above it.

A model shared by several profiles needs one guard for all of them: give --profile, --fit
and --holdout once per profile, in the same order. Guard the model that is deployed (the
INT8 one after `cellctl quantize`): the guard reads that model's own feature map. Guarding
a guarded model replaces its guard. Only light imports at module level: ``cellctl`` builds
its parser from ``add_parser``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from cellctl.commands.args import existing_dir, existing_file, fraction, open_fraction, output_file

if TYPE_CHECKING:
    from cellctl.ood.calibrate import Sets

DEFAULT_FALSE_ALARM_RATE = 0.001


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:  # Any: cli's parser is a subclass
    p = sub.add_parser(
        "guard", help="fit a model's out-of-distribution guard on labelled images and write the guarded model"
    )
    p.add_argument("model", type=existing_file, metavar="MODEL", help="ONNX model with a 'features' output")
    p.add_argument("output", type=output_file, metavar="OUT", help="guarded ONNX model to write")
    p.add_argument(
        "--fit",
        type=existing_dir,
        action="append",
        required=True,
        metavar="DIR",
        help="images in the eval layout to fit on (DIR/{head,shank}/{good,defect}); once per --profile",
    )
    p.add_argument(
        "--holdout",
        type=existing_dir,
        action="append",
        required=True,
        metavar="DIR",
        help="other images (other parts) to set the threshold on; once per --profile",
    )
    p.add_argument(
        "--profile",
        action="append",
        required=True,
        metavar="NAME",
        help="profile whose views the model scores (repeat for each profile that uses the model)",
    )
    p.add_argument(
        "--config", type=existing_file, default=None, metavar="FILE", help="cell config whose profiles_dir holds them"
    )
    p.add_argument(
        "--false-alarm-rate",
        type=open_fraction,
        default=DEFAULT_FALSE_ALARM_RATE,
        metavar="RATE",
        help=f"per in-distribution view, in (0, 1) (default {DEFAULT_FALSE_ALARM_RATE}); "
        "the holdout needs at least 1/rate views",
    )
    p.add_argument(
        "--shrinkage",
        type=fraction,
        default=0.05,
        metavar="ALPHA",
        help="covariance shrinkage towards a scaled identity, in [0, 1] (default 0.05)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def _pairs(args: argparse.Namespace) -> tuple[Sets, Sets, int]:
    """(profile, --fit DIR) and (profile, --holdout DIR) pairs, and the cell's inference threads."""
    from cellctl.commands.common import find_profile
    from cellctl.ood.calibrate import Refused

    if not len(args.profile) == len(args.fit) == len(args.holdout):
        raise Refused(
            f"give --fit and --holdout once per --profile, in the same order "
            f"(got {len(args.profile)} --profile, {len(args.fit)} --fit, {len(args.holdout)} --holdout)"
        )
    found = [find_profile(name, args.config, verify_model=False) for name in args.profile]
    profiles = [rp for rp, _, _ in found]
    threads = found[0][1].inference_threads
    return list(zip(profiles, args.fit, strict=True)), list(zip(profiles, args.holdout, strict=True)), threads


def _print(result: dict[str, Any]) -> None:
    h = result["holdout"]
    print(f"wrote {result['out']} (sha256 {result['sha256']}); put this sha256 in the profiles' model.sha256")
    print(
        f"guard: Mahalanobis distance of pooled features, shrinkage {result['shrinkage']:g}, "
        f"fitted on {result['fit']['views']} views"
        + (" (the model's previous guard replaced)" if result["replaced_guard"] else "")
    )
    print(
        f"threshold {result['threshold']:g} for a false-alarm rate of {result['false_alarm_rate']:g} per view: "
        f"{h['false_alarms']} of {h['views']} held-out views above it ({h['false_alarm_rate']:.4%}; "
        f"95% upper bound {h['false_alarm_rate_upper95']:.4%})"
    )
    for which, skipped in result["skipped_images"].items():
        if skipped["count"]:
            print(f"left out of --{which}: {skipped['count']} images the daemon would not score whole, e.g.")
            for line in skipped["first"]:
                print(f"  {line}")
    print(f"{'held-out':24}{'views':>7}{'above':>7}{'max score':>11}")
    for key, s in h["by"].items():
        print(f"{key:24}{s['views']:>7}{s['false_alarms']:>7}{s['max_score']:>11.3f}")


def main(args: argparse.Namespace) -> int:
    from cellctl.commands.common import report
    from cellctl.config import ConfigError
    from cellctl.ood.calibrate import Refused, guard

    try:
        if args.model.resolve() == args.output.resolve():
            raise Refused(f"the output {args.output} is the input model; write the guarded model to another file")
        fit, holdout, threads = _pairs(args)
        result = guard(args.model, args.output, fit, holdout, args.false_alarm_rate, args.shrinkage, threads)
    except ConfigError as exc:
        report(exc)
        return 2
    except (Refused, OSError) as exc:  # OSError: unreadable model, disk full
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0
