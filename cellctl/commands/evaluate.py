"""``cellctl eval --profile NAME DIR``: accuracy, escapes and false rejects on labelled images."""

from __future__ import annotations

import argparse
import json
import sys

from cellctl.commands.common import find_profile, report
from cellctl.config import ConfigError, file_sha256
from cellctl.drivers import DriverInitError
from cellctl.evaluation import evaluate
from cellctl.inference import OnnxInferencer


def main(args: argparse.Namespace) -> int:
    try:
        rp, cell, _ = find_profile(args.profile, args.config, verify_model=args.model is None)
    except ConfigError as exc:
        report(exc)
        return 2
    model = args.model or rp.model_path
    try:
        sha = file_sha256(model) if args.model else rp.profile.model.sha256
        inferencer = OnnxInferencer(
            model, sha, cell.inference_threads, input_size_px=rp.profile.preprocess.input_size_px
        )
        result = evaluate(rp, inferencer.infer, args.dir)
    except (DriverInitError, OSError) as exc:  # a model it cannot run, no images, unreadable files
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["model"] = {"path": str(model), "sha256": sha}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"profile {rp.name}, model {model.name}, threshold {result['threshold']}")
    print(f"{'':8}{'n':>6}{'accuracy':>10}{'escapes':>9}{'false rej':>11}{'recheck':>9}")
    for kind in ("head", "shank", "total"):
        if kind in result:
            s = result[kind]
            print(
                f"{kind:8}{s['n']:>6}{s['accuracy']:>10.4f}{s['escapes']:>9}{s['false_rejects']:>11}{s['recheck']:>9}"
            )
    c = result["total"]["confusion"]
    print("confusion (rows: truth, columns: called good / defect / recheck)")
    for truth in ("good", "defect"):
        print(f"  {truth:8}{c[truth]['good']:>8}{c[truth]['defect']:>8}{c[truth]['recheck']:>8}")
    return 0
