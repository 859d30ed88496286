"""``cellctl eval --profile NAME DIR [--parts]``: the daemon's decision path on labelled images.

Per image (DIR/{head,shank}/{good,defect}/) or, with --parts, per whole part
(DIR/parts/{good,defect}/<part_id>/): the confusion of truth against PASS / REJECT / RECHECK,
escapes, false rejects, rechecks with their reasons, and the files that could not be read
(counted as RECHECK). See cellctl.evaluation.

Every line of the table that shows a file name (or a reason that may hold one) is escaped
(``cellctl.text.printable``): a name holding a newline or a terminal control cannot forge a
line. ``--json`` holds no number JSON does not know (NaN, Infinity): such a figure is null.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from cellctl.commands.common import find_profile, report
from cellctl.config import ConfigError, file_sha256
from cellctl.drivers import DriverInitError
from cellctl.evaluation import evaluate, evaluate_parts
from cellctl.inference import OnnxInferencer
from cellctl.text import printable

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
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(finite(result), allow_nan=False))
    else:
        print_table(result)
    return 0


def finite(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, numbers, strings) with every float that is not finite
    as None: ``json.dumps`` would write NaN or Infinity, which no JSON reader accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def print_table(result: dict[str, Any]) -> None:
    ood = result["ood_threshold"]
    print(
        f"profile {result['profile']}, model {printable(result['model']['path'])}, "
        f"decision threshold {result['threshold']}, "
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
            print(printable(f"  {count:>5}  {text}"))
    items = result["items"]
    _list("escapes (defective, called PASS)", [i for i in items if i["truth"] == "defect" and i["called"] == "good"])
    _list("false rejects (good, called REJECT)", [i for i in items if i["truth"] == "good" and i["called"] == "defect"])
    _list("rechecks", [i for i in items if i["called"] == "recheck"])
    if result["unreadable"]:
        print(f"unreadable files, counted as RECHECK ({len(result['unreadable'])}):")
        for line in result["unreadable"][:LISTED]:
            print(printable(f"  {line}"))
        _more(len(result["unreadable"]))
    if result.get("bad_records"):
        count = len(result["bad_records"])
        print(f"part.json files not used, their parts judged all the same but not in the breakdown ({count}):")
        for line in result["bad_records"][:LISTED]:
            print(printable(f"  {line}"))
        _more(len(result["bad_records"]))


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
        print(printable(f"  {i['name']}: {i['reason']}"))
    _more(len(items))


def _more(count: int) -> None:
    if count > LISTED:
        print(f"  ... and {count - LISTED} more (all of them in --json)")


def _r(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
