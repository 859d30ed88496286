"""``cellctl bench``: model latency, FP32 and INT8 side by side in one process.

The timing is cellctl/benchmark.py's. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

from cellctl.benchmark import bench
from cellctl.commands.common import find_profile, report
from cellctl.config import ConfigError
from cellctl.drivers import DriverInitError
from cellctl.vision.tiles import nominal_tile_count


def main(args: argparse.Namespace) -> int:
    try:
        rp, cell, _ = find_profile(args.profile, args.config)
    except ConfigError as exc:
        report(exc)
        return 2
    models = {"int8": rp.model_path}
    fp32 = args.fp32 or rp.model_path.with_name(rp.model_path.name.replace("int8", "fp32"))
    if fp32.resolve() == rp.model_path.resolve():
        print(f"error: --fp32 {fp32} is the profile's own model; name the FP32 model to compare", file=sys.stderr)
        return 2
    if fp32.is_file():
        models = {"fp32": fp32, "int8": rp.model_path}
    else:  # only the default can be missing (argparse checked --fp32): say so, do not drop it silently
        print(
            f"note: no FP32 model {fp32} beside the profile's model; timing INT8 only (pass --fp32 FILE to compare)",
            file=sys.stderr,
        )
    size = rp.profile.preprocess.input_size_px
    try:
        result = bench(models, nominal_tile_count(rp.profile), size, args.rounds, cell.inference_threads)
    except (DriverInitError, OSError) as exc:  # a model that cannot run: the comparison fails loudly
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
