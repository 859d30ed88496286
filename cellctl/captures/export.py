"""``cellctl captures export``: the store's captures in the layouts ``cellctl eval`` (and a
trainer) read, under ``unlabelled/`` for a quality engineer to sort.

    OUT/parts/unlabelled/<capture>/            head<angle>.png ... strip.png, capture.json
    OUT/head/unlabelled/<capture>_head90.png   + <capture>_head90.json
    OUT/shank/unlabelled/<capture>_strip.png   + <capture>_strip.json

Beside each single image, what the cell made of it: the part's verdict and reason, why it was
kept, the image's highest score and every one of its views (score, out-of-distribution
distance, problem). Sorting is moving a file (and its .json) from ``unlabelled/`` to
``good/`` or ``defect/`` beside it; a part folder likewise under ``parts/``. Images are hard
links to the store's files where the file system allows (no second copy), else copies; an
export never changes the store, and exporting again over the same OUT rewrites the same files.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cellctl.captures.store import RECORD, captured_at, captures
from cellctl.evaluation import PARTS, STRIP_FILE, UNLABELLED, head_file
from cellctl.files import BadFile, read_json
from cellctl.text import printable
from cellctl.vision.images import link_or_copy

# the store writes a few kB per capture (every view's score, distance and problem)
MAX_RECORD_BYTES = 16 * 2**20
MAX_DEPTH = 16  # the store's record nests 3 deep (views -> view -> fields)


class BadCapture(ValueError):
    """A capture.json that is not one the store wrote; the message says why."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def export_captures(
    store: Path, out: Path, since: datetime | None = None, note: Callable[[str], None] = _stderr
) -> Counter[str]:
    """Every capture at or after ``since``; counts of what was written by layout. A capture
    whose capture.json cannot be read or is not the store's (not JSON, nested too deep, not
    an object, views or head positions of another shape), or whose files cannot be exported,
    is counted ``unreadable``, named in one line to ``note`` (file and why) and skipped; the
    export goes on with the next."""
    counts: Counter[str] = Counter()
    for folder in captures(store):
        at = captured_at(folder.name)
        if since is not None and at is not None and at < since:
            continue
        try:
            record = read_record(folder / RECORD)
            counts += _export_one(folder, record, out)
        except BadCapture as exc:
            counts["unreadable"] += 1
            note(printable(f"note: {folder / RECORD}: {exc}; capture skipped"))
        except OSError as exc:
            counts["unreadable"] += 1
            note(printable(f"note: {folder}: cannot export it: {exc.strerror or exc}; capture skipped"))
    return counts


def read_record(path: Path) -> dict[str, Any]:
    """A capture.json as the store writes it, checked for what the export reads: an object,
    ``head_positions_deg`` a list of finite angles, ``views`` an object of view objects whose
    ``score`` is a number or null. ``BadCapture`` saying why otherwise."""
    try:
        data = read_json(path, MAX_RECORD_BYTES, "a capture record")
    except BadFile as exc:
        raise BadCapture(str(exc)) from None
    if not isinstance(data, dict):
        raise BadCapture(f"a JSON {type(data).__name__}, not an object")
    if _depth(data) > MAX_DEPTH:
        raise BadCapture(f"nested deeper than {MAX_DEPTH} levels, deeper than a capture record")
    heads = data.get("head_positions_deg", [])
    if not isinstance(heads, list) or not all(_finite_number(a) for a in heads):
        raise BadCapture("head_positions_deg is not a list of angles")
    views = data.get("views", {})
    if not isinstance(views, dict) or not all(isinstance(v, dict) for v in views.values()):
        raise BadCapture("views is not an object of views")
    for name, view in views.items():
        if view.get("score") is not None and not _finite_number(view["score"]):
            raise BadCapture(f"the score of view {name} is not a finite number")
    return data


def _depth(value: Any) -> int:
    """How deeply JSON-like ``value`` nests (without recursion: it may nest deeply)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
            stack.extend((c, depth + 1) for c in children)
    return deepest


def _finite_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer no float holds
        return False


def _finite(value: Any) -> Any:
    """JSON-like ``value`` with every float that is not finite as None (no NaN in a .json)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _export_one(folder: Path, record: dict[str, Any], out: Path) -> Counter[str]:
    counts: Counter[str] = Counter({f"{PARTS}/{UNLABELLED}": 1})
    part_dir = out / PARTS / UNLABELLED / folder.name
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        link_or_copy(path, part_dir / path.name)
    views = record.get("views", {})
    common = {k: record.get(k) for k in ("seq", "part_id", "profile", "model_sha256", "outcome", "reason", "why")}
    images = [(f"head@{a:g}", "head", head_file(a)) for a in record.get("head_positions_deg", [])]
    images.append(("shank", "shank", STRIP_FILE))
    for prefix, kind, file in images:
        source = folder / file
        if not source.is_file():
            continue
        mine = {n: v for n, v in views.items() if _of_image(n, prefix)}
        scores = [v["score"] for v in mine.values() if v.get("score") is not None]
        stem = f"{folder.name}_{Path(file).stem}"
        link_or_copy(source, out / kind / UNLABELLED / f"{stem}.png")
        beside = {**common, "capture": folder.name, "image": file, "score": max(scores, default=None), "views": mine}
        text = json.dumps(_finite(beside), indent=1, sort_keys=True, allow_nan=False)
        (out / kind / UNLABELLED / f"{stem}.json").write_text(text + "\n")
        counts[f"{kind}/{UNLABELLED}"] += 1
    return counts


def _of_image(view: str, prefix: str) -> bool:
    """``head@90`` and ``head@90#2`` are tiles of the head frame at 90; ``shank[r0,c1]`` of the strip."""
    if prefix == "shank":
        return view.startswith("shank")
    return view == prefix or view.startswith(prefix + "#")
