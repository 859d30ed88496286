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
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from cellctl.captures.store import RECORD, captured_at, captures
from cellctl.evaluation import PARTS, STRIP_FILE, UNLABELLED, head_file
from cellctl.vision.images import link_or_copy


def export_captures(store: Path, out: Path, since: datetime | None = None) -> Counter[str]:
    """Every capture at or after ``since``; counts of what was written by layout."""
    counts: Counter[str] = Counter()
    for folder in captures(store):
        at = captured_at(folder.name)
        if since is not None and at is not None and at < since:
            continue
        try:
            record = json.loads((folder / RECORD).read_text())
        except (OSError, ValueError):
            counts["unreadable"] += 1
            continue
        counts += _export_one(folder, record, out)
    return counts


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
        (out / kind / UNLABELLED / f"{stem}.json").write_text(json.dumps(beside, indent=1, sort_keys=True) + "\n")
        counts[f"{kind}/{UNLABELLED}"] += 1
    return counts


def _of_image(view: str, prefix: str) -> bool:
    """``head@90`` and ``head@90#2`` are tiles of the head frame at 90; ``shank[r0,c1]`` of the strip."""
    if prefix == "shank":
        return view.startswith("shank")
    return view == prefix or view.startswith(prefix + "#")
