"""Scoring the per-view decision path on labelled images (``cellctl eval``).

Each image goes through what the daemon does with a delivered frame: the same pixel-format
conversion, regions, tiles, normalisation, model and threshold. A head image is one view; a
line-scan strip is judged defect when any of its tiles reaches the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cellctl.config import ResolvedProfile
from cellctl.vision import InvalidImage, prepare_view
from cellctl.vision.images import labelled_images, read_camera_image


def view_batch(rp: ResolvedProfile, data: np.ndarray, fmt: str, kind: str) -> np.ndarray:
    views = [v for v in rp.views if v.kind == kind][: 1 if kind == "head" else None]
    return np.stack([prepare_view(data, fmt, v, rp.profile.preprocess) for v in views])


def _empty() -> dict[str, Any]:
    return {
        "n": 0,
        "correct": 0,
        "escapes": 0,
        "false_rejects": 0,
        "recheck": 0,
        "confusion": {"good": {"good": 0, "defect": 0, "recheck": 0}, "defect": {"good": 0, "defect": 0, "recheck": 0}},
    }


def evaluate(rp: ResolvedProfile, infer: Callable[[np.ndarray], np.ndarray], root: Path) -> dict[str, Any]:
    items = labelled_images(root)
    if not items:
        raise FileNotFoundError(f"no images under {root}/{{head,shank}}/{{good,defect}}/")
    threshold = rp.profile.decision.threshold
    stats: dict[str, dict[str, Any]] = {}
    for path, kind, defective in items:
        try:
            data, fmt = read_camera_image(path, kind, rp.profile)
            score = float(np.max(infer(view_batch(rp, data, fmt, kind))))
            called = "recheck" if not math.isfinite(score) else ("defect" if score >= threshold else "good")
        except InvalidImage:
            called = "recheck"
        truth = "defect" if defective else "good"
        for key in (kind, "total"):
            s = stats.setdefault(key, _empty())
            s["n"] += 1
            s["confusion"][truth][called] += 1
            s["correct"] += called == truth
            s["escapes"] += defective and called == "good"
            s["false_rejects"] += (not defective) and called == "defect"
            s["recheck"] += called == "recheck"
    for s in stats.values():
        n_def = sum(s["confusion"]["defect"].values())
        n_good = sum(s["confusion"]["good"].values())
        s["accuracy"] = round(s.pop("correct") / s["n"], 4)
        s["escape_rate"] = round(s["escapes"] / n_def, 4) if n_def else None
        s["false_reject_rate"] = round(s["false_rejects"] / n_good, 4) if n_good else None
    return {
        "profile": rp.name,
        "threshold": threshold,
        **{k: stats[k] for k in ("head", "shank", "total") if k in stats},
    }
