"""``cellctl train OUT --profile NAME --data DIR [...]``: the student factory (cellctl/train/).

Needs the ``train`` extra (torch, CPU); the daemon never imports it. Only light imports at
module level: ``cellctl`` builds its parser from ``add_parser``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cellctl.commands.args import (
    existing_dir,
    existing_file,
    fraction,
    non_negative_int,
    open_fraction,
    output_dir,
    positive_float,
    positive_int,
)

ARCH_CHOICES = ("resnet10", "resnet18", "resnet34", "resnet50")


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not three numbers: {text!r} (e.g. 0.7,0.15,0.15)") from None
    if len(parts) != 3 or not all(0.0 <= p <= 1.0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6 or parts[0] == 0:
        raise argparse.ArgumentTypeError(f"train,val,heldout fractions in [0, 1] summing to 1, train > 0 (got {text})")
    return parts[0], parts[1], parts[2]


def _augment(text: str) -> frozenset[str]:
    from cellctl.train.augment import parse_augment

    try:
        return parse_augment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _teachers(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in ARCH_CHOICES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown network {', '.join(unknown)} (known: {', '.join(ARCH_CHOICES)})")
    return names


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:  # Any: cli's parser is a subclass
    p = sub.add_parser(
        "train",
        help="train a student on labelled images (eval layout), distil, quantize, guard and measure it: "
        "a model package (needs the train extra)",
    )
    p.add_argument("out", type=output_dir, metavar="OUT", help="the model package folder to write")
    p.add_argument("--profile", action="append", required=True, metavar="NAME", help="profile of the next --data")
    p.add_argument(
        "--data",
        type=existing_dir,
        action="append",
        required=True,
        metavar="DIR",
        help="labelled images in the eval layout; once per --profile, in the same order",
    )
    p.add_argument(
        "--config", type=existing_file, default=None, metavar="FILE", help="cell config whose profiles_dir holds them"
    )
    p.add_argument("--epochs", type=positive_int, default=6, help="student epochs (default 6)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate, one-cycle (default 0.001)")
    p.add_argument("--batch-bags", type=positive_int, default=8, help="items per step (default 8)")
    p.add_argument(
        "--good-tiles", type=positive_int, default=4, help="tiles drawn from a good item per step (default 4)"
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the split, the draws and the networks (default 0)"
    )
    p.add_argument(
        "--balance", choices=("sample", "weight", "none"), default="sample", help="class imbalance (default sample)"
    )
    p.add_argument(
        "--negatives-per-positive", type=positive_float, default=3.0, help="with --balance sample (default 3)"
    )
    p.add_argument(
        "--no-masks",
        action="store_true",
        help="ignore DIR/masks/: train defective images by their image label only (multiple instances)",
    )
    p.add_argument(
        "--augment",
        type=_augment,
        default=_augment("all"),
        metavar="LIST",
        help="flip,rotate,zoom,shear,channel,brightness, all or none (default all)",
    )
    p.add_argument(
        "--teachers",
        type=_teachers,
        default=(),
        metavar="ARCH[,ARCH]",
        help=f"teachers to train and distil from: {', '.join(ARCH_CHOICES)} (default none)",
    )
    p.add_argument("--teacher-epochs", type=positive_int, default=4, help="epochs per teacher (default 4)")
    p.add_argument(
        "--alpha", type=fraction, default=0.1, help="weight of the hard-label loss when distilling (default 0.1)"
    )
    p.add_argument("--temperature", type=positive_float, default=4.0, help="distillation temperature (default 4)")
    p.add_argument(
        "--split",
        type=_fractions,
        default=(0.7, 0.15, 0.15),
        metavar="T,V,H",
        help="train,val,heldout fractions of the parts (default 0.7,0.15,0.15)",
    )
    p.add_argument(
        "--budget-min",
        type=positive_float,
        default=None,
        metavar="MIN",
        help="wall-clock minutes for all training; no epoch starts that would end past it",
    )
    p.add_argument(
        "--resume", action="store_true", help="carry on from OUT/work/ of an interrupted run with the same options"
    )
    p.add_argument(
        "--init",
        type=existing_file,
        default=None,
        metavar="FILE.onnx",
        help="start the student from this exported student",
    )
    p.add_argument("--workers", type=positive_int, default=2, help="processes tiling the images (default 2)")
    p.add_argument("--threads", type=positive_int, default=2, help="torch and onnxruntime threads (default 2)")
    p.add_argument(
        "--false-alarm-rate",
        type=open_fraction,
        default=0.001,
        metavar="RATE",
        help="the guard's, per val view (default 0.001)",
    )
    p.add_argument(
        "--calibration-views",
        type=positive_int,
        default=300,
        metavar="N",
        help="train views calibrating INT8, and val views INT8 is checked against FP32 on (default 300)",
    )
    p.add_argument(
        "--keep-float",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="blocks INT8 may keep float where quantizing them changes decisions on the check views "
        "(default 2; 0: all quantized)",
    )
    p.add_argument(
        "--keep-work", action="store_true", help="keep OUT/work/ (tiles, checkpoints) after the package is written"
    )
    p.add_argument("--json", action="store_true", help="print the card as one JSON object")


def main(args: argparse.Namespace) -> int:
    from cellctl.commands.common import find_profile, report
    from cellctl.config import ConfigError

    try:  # only to say what is missing before any work
        import torch  # noqa: F401
        import tqdm  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        print(
            f"error: cellctl train needs the train extra ({exc.name} is missing): pip install -e '.[train]'",
            file=sys.stderr,
        )
        return 2
    from cellctl.ood.calibrate import Refused as GuardRefused
    from cellctl.train.fit import FitConfig, Refused
    from cellctl.train.package import TrainRequest, run

    if len(args.profile) != len(args.data):
        print(
            f"error: give --data once per --profile (got {len(args.profile)} --profile, {len(args.data)} --data)",
            file=sys.stderr,
        )
        return 2
    try:
        profiles = [find_profile(name, args.config, verify_model=False)[0] for name in args.profile]
    except ConfigError as exc:
        report(exc)
        return 2
    student = FitConfig(
        epochs=args.epochs,
        lr=args.lr,
        bags_per_step=args.batch_bags,
        good_tiles_per_bag=args.good_tiles,
        balance=args.balance,
        negatives_per_positive=args.negatives_per_positive,
        augment=args.augment,
        alpha=args.alpha,
        temperature=args.temperature,
        seed=args.seed,
        init=str(args.init.resolve()) if args.init else None,
        masks=not args.no_masks,
    )
    request = TrainRequest(
        out=args.out,
        data=list(zip(profiles, args.data, strict=True)),
        student=student,
        teachers=args.teachers,
        teacher_epochs=args.teacher_epochs,
        fractions=args.split,
        budget_s=args.budget_min * 60 if args.budget_min else None,
        resume=args.resume,
        workers=args.workers,
        threads=args.threads,
        false_alarm_rate=args.false_alarm_rate,
        calibration_views=args.calibration_views,
        keep_float_max=args.keep_float,
        keep_work=args.keep_work,
    )
    try:
        card = run(request)
    except (Refused, GuardRefused, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(card, default=str))
    else:
        _print(card)
    return 0


def _print(card: dict[str, Any]) -> None:
    files = "student-fp32.onnx, student-int8.onnx, card.json, MODEL_CARD.md, split.json, train.json"
    print(f"wrote {card['package']}: {files}")
    for model, by_profile in card["heldout"].items():
        for profile, by_kind in by_profile.items():
            for kind, t in by_kind.items():
                print(
                    f"held-out {model} {profile} {kind}: n {t['n']}, escapes {t['escapes']}, "
                    f"false rejects {t['false_rejects']}, rechecks {t['rechecks']}"
                )
    from cellctl.keep_float import describe

    print(f"INT8: {describe(card['int8_quantization'])}")
    c = card["int8_vs_fp32"]
    print(f"INT8 vs FP32: {c['views_differing']} of {c['views']} held-out views decided otherwise")
    print(f"deploy it with `cellctl promote {card['package']} --profile NAME` (the gate checks these figures)")
