"""``cellctl eval --profile NAME DIR [--parts]``: the daemon's decision path on labelled images.

Per image (DIR/{head,shank}/{good,defect}/) or, with --parts, per whole part
(DIR/parts/{good,defect}/<part_id>/): the confusion of truth against PASS / REJECT / RECHECK,
escapes, false rejects, rechecks with their reasons, and the files that could not be read
(counted as RECHECK). See cellctl.evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cellctl.commands.common import find_profile, report
from cellctl.config import ConfigError, file_sha256
from cellctl.drivers import DriverInitError
from cellctl.evaluation import evaluate, evaluate_parts
from cellctl.inference import OnnxInferencer

LISTED = 10  # files shown per list in the table; --json has them all


def main(args: argparse.Namespace) -> int:
    try:
        rp, cell, _ = find_profile(args.profile, args.config, verify_model=args.model is None)
    except ConfigError as exc:
        report(exc)
        return 2
    path = args.model or rp.model_path
    try:
        sha = file_sha256(path) if args.model else rp.profile.model.sha256
        model = OnnxInferencer(path, sha, cell.inference_threads, input_size_px=rp.profile.preprocess.input_size_px)
        result = (evaluate_parts if args.parts else evaluate)(rp, model, args.dir)
    except (DriverInitError, OSError) as exc:  # a model it cannot run, nothing to evaluate
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    ood = result["ood_threshold"]
    print(
        f"profile {result['profile']}, model {result['model']['path']}, decision threshold {result['threshold']}, "
        f"ood threshold {ood if ood is None else f'{ood:.4g}'}, per {'part' if result['mode'] == 'parts' else 'image'}"
    )
    kinds = [k for k in ("head", "shank", "part", "total") if k in result]
    print(
        f"{'':8}{'n':>6}{'accuracy':>10}{'escapes':>9}{'rate':>8}{'false rej':>11}{'rate':>8}{'recheck':>9}{'rate':>8}"
    )
    for kind in kinds:
        s = result[kind]
        print(
            f"{kind:8}{s['n']:>6}{_r(s['accuracy']):>10}{s['escapes']:>9}{_r(s['escape_rate']):>8}"
            f"{s['false_rejects']:>11}{_r(s['false_reject_rate']):>8}{s['rechecks']:>9}{_r(s['recheck_rate']):>8}"
        )
    overall = result[kinds[-1]]
    rank = overall["ranking"]
    if rank["auc"] is not None:
        print(
            f"ranking by each item's highest trusted score: AUC {rank['auc']:.4f}; no escape at a threshold of "
            f"{rank['zero_escape_threshold']:.4g}, where {rank['false_rejects_at_zero_escapes']} of "
            f"{rank['scored_good']} scored good items would be rejected ({rank['unscored']} items unscored)"
        )
    if "drawn" in result:
        _print_drawn(result["drawn"])
    print("confusion (rows: truth; columns: called good (PASS) / defect (REJECT) / recheck (RECHECK))")
    for truth in ("good", "defect"):
        row = overall["confusion"][truth]
        print(f"  {truth:8}{row['good']:>8}{row['defect']:>8}{row['recheck']:>8}")
    if overall["recheck_reasons"]:
        print("RECHECK causes (numbers as #; each counted once per item):")
        for text, count in overall["recheck_reasons"].items():
            print(f"  {count:>5}  {text}")
    items = result["items"]
    _list("escapes (defective, called PASS)", [i for i in items if i["truth"] == "defect" and i["called"] == "good"])
    _list("false rejects (good, called REJECT)", [i for i in items if i["truth"] == "good" and i["called"] == "defect"])
    _list("rechecks", [i for i in items if i["called"] == "recheck"])
    if result["unreadable"]:
        print(f"unreadable files, counted as RECHECK ({len(result['unreadable'])}):")
        for line in result["unreadable"][:LISTED]:
            print(f"  {line}")
        _more(len(result["unreadable"]))


def _print_drawn(drawn: dict[str, Any]) -> None:
    """Good parts clean and with sub-threshold indications apart (from the renders' part.json)."""
    print("good parts by what they carry (part.json of cellctl sim --export):")
    for group, text in (("good_clean", "no indication"), ("good_with_subthreshold", "below the minimum only")):
        g = drawn[group]
        print(f"  {text:24}{g['n']:>6} parts{g['false_rejects']:>6} false rejects{g['rechecks']:>6} rechecks")
    near = ", ".join(f"{n} reach {float(level):.0%}" for level, n in drawn["good_near_limit"].items())
    print(f"  good parts whose largest sub-threshold indication comes near the limit: {near}")
    if drawn["unrecorded"]:
        print(f"  {drawn['unrecorded']} parts without a part.json are not in these counts")


def _list(title: str, items: list[dict[str, Any]]) -> None:
    if not items:
        return
    print(f"{title} ({len(items)}):")
    for i in items[:LISTED]:
        print(f"  {i['name']}: {i['reason']}")
    _more(len(items))


def _more(count: int) -> None:
    if count > LISTED:
        print(f"  ... and {count - LISTED} more (all of them in --json)")


def _r(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
