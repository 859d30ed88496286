"""``cellctl quantize FP32 INT8 --calibration DIR --profile NAME``: static INT8 quantization
(cellctl/quantization.py), calibrated on the views of the images in DIR's eval layout."""

from __future__ import annotations

import argparse
import sys

from cellctl.commands.common import find_profile, report
from cellctl.config import ConfigError
from cellctl.quantization import check_input, quantize


def main(args: argparse.Namespace) -> int:
    try:
        rp, _, _ = find_profile(args.profile, args.config, verify_model=False)
        refused = check_input(args.model, args.output)
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return 2
        sha = quantize(rp, args.model, args.output, args.calibration, args.max_images)
    except ConfigError as exc:
        report(exc)
        return 2
    except OSError as exc:  # no calibration images, unreadable files, disk full
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.output} (sha256 {sha}); add its out-of-distribution guard with `cellctl guard`, "
        "then put the guarded model's sha256 in the profile's model.sha256"
    )
    return 0
