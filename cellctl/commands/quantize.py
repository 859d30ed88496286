"""``cellctl quantize FP32 INT8 --calibration DIR --profile NAME``: static INT8 quantization
(cellctl/quantization.py), calibrated on the views of the images in DIR's eval layout, blocks
kept float where quantizing them changes decisions on those views (cellctl/keep_float.py)."""

from __future__ import annotations

import argparse
import sys

from cellctl.commands.common import find_profile, report
from cellctl.config import ConfigError
from cellctl.keep_float import describe
from cellctl.quantization import check_input, quantize


def main(args: argparse.Namespace) -> int:
    try:
        rp, _, _ = find_profile(args.profile, args.config, verify_model=False)
        refused = check_input(args.model, args.output, rp.profile.preprocess.input_size_px)
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return 2
        done = quantize(rp, args.model, args.output, args.calibration, args.max_images, args.keep_float, args.threads)
    except ConfigError as exc:
        report(exc)
        return 2
    except OSError as exc:  # no calibration images, unreadable files, disk full
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own types for a graph it cannot run or quantize
        print(f"error: onnxruntime cannot quantize {args.model}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 2
    print(f"INT8: {describe(done)}")
    print(
        f"wrote {args.output} (sha256 {done['sha256']}); add its out-of-distribution guard with `cellctl guard`, "
        "then put the guarded model's sha256 in the profile's model.sha256"
    )
    return 0
