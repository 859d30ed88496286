"""From a trained student to the deployable pair, measured: export, guard, quantize, guard,
then the held-out split through the daemon's decision path for FP32 and INT8 alike.

The guard is fitted on the train split's views and its threshold set on the val split's (parts
it was not fitted on) for ``false_alarm_rate``; the INT8 model gets its own guard on its own
features (quantization moves them). INT8 calibration views are a seeded draw from the train
split; INT8 is compared with FP32 on a draw of the val split's views, and the blocks whose
quantization changes decisions there are kept float (cellctl.keep_float). The held-out split
is judged with ``cellctl.evaluation`` (the code of ``cellctl eval``: locate, tile, guard,
decide, with the profile's threshold), per profile and per view kind,
and every held-out view's decision (defect, clean, not trusted) is compared between INT8 and
FP32: the gate (``cellctl promote``) wants them identical.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellctl.config import ResolvedProfile, file_sha256
from cellctl.decision import ViewResult, combine
from cellctl.evaluation import Judged, judge_image, judge_part, tally
from cellctl.inference import OnnxInferencer
from cellctl.ood.calibrate import Skipped, ViewSource, guard_views
from cellctl.quantization import Check, check_views, quantize_views
from cellctl.train.bags import Bags
from cellctl.train.items import Item
from cellctl.train.nets import ResNet, export
from cellctl.train.package import FP32, INT8, WORK, TrainRequest, training_views

GUARD_SHRINKAGE = 0.05  # as `cellctl guard`'s default


def deploy(
    req: TrainRequest,
    net: ResNet,
    sides: dict[str, Bags],
    heldout: Sequence[Item],
    profiles: dict[str, ResolvedProfile],
) -> dict[str, Any]:
    """``heldout``: every held-out item, those without a tile too (the daemon RECHECKs them)."""
    work = req.out / WORK
    size = next(iter(profiles.values())).profile.preprocess.input_size_px
    raw = work / "student-fp32.raw.onnx"
    export(net, raw, size)
    listed = list(profiles.values())
    fit, held = _views(sides["train"]), _views(sides["val"])
    guards = {
        "fp32": guard_views(raw, req.out / FP32, fit, held, listed, req.false_alarm_rate, GUARD_SHRINKAGE, req.threads)
    }
    raw8 = work / "student-int8.raw.onnx"
    thresholds = tuple(sorted({rp.profile.decision.threshold for rp in listed}))
    check = Check(
        check_views(training_views(sides["val"], req.calibration_views, req.student.seed)),
        thresholds,
        req.keep_float_max,
    )
    quantized = quantize_views(
        raw, raw8, lambda: training_views(sides["train"], req.calibration_views, req.student.seed), check, req.threads
    )
    guards["int8"] = guard_views(
        raw8, req.out / INT8, fit, held, listed, req.false_alarm_rate, GUARD_SHRINKAGE, req.threads
    )
    judged = {
        name: judge_heldout(req.out / file, heldout, profiles, req.threads)
        for name, file in (("fp32", FP32), ("int8", INT8))
    }
    return {
        "models": {
            name: {"file": file, "sha256": file_sha256(req.out / file), "bytes": (req.out / file).stat().st_size}
            for name, file in (("fp32", FP32), ("int8", INT8))
        },
        "guard": {name: _guard_figures(g) for name, g in guards.items()},
        "int8_calibration_views": min(req.calibration_views, int(sides["train"].count.sum())),
        "int8_quantization": {k: v for k, v in quantized.items() if k != "sha256"},
        "heldout": {name: figures(j, profiles) for name, j in judged.items()},
        # what the figures were measured at: `cellctl promote` refuses them for a profile that has moved since
        "heldout_decision": {name: rp.profile.decision.model_dump() for name, rp in profiles.items()},
        "heldout_parts": {name: figures(whole_parts(j, heldout), profiles) for name, j in judged.items()},
        "int8_vs_fp32": compare(judged["fp32"], judged["int8"], profiles),
    }


def _views(bags: Bags) -> ViewSource:
    """The guard's view source over a split: each bag's tiles, keyed "profile/kind"."""

    def views(skipped: Skipped) -> Iterator[tuple[str, np.ndarray]]:
        for b, item in enumerate(bags.items):
            yield f"{item.profile}/{item.kind}", bags.tiles(b).astype(np.float32) / 255.0

    return views


def judge_heldout(
    model_path: Path, heldout: Sequence[Item], profiles: dict[str, ResolvedProfile], threads: int
) -> list[tuple[str, Judged]]:
    """(profile, judgement) of every held-out item, by the decision path of `cellctl eval`."""
    out: list[tuple[str, Judged]] = []
    models: dict[int, OnnxInferencer] = {}
    for item in heldout:
        rp = profiles[item.profile]
        size = rp.profile.preprocess.input_size_px
        if size not in models:
            models[size] = OnnxInferencer(model_path, file_sha256(model_path), threads, input_size_px=size)
        truth = "defect" if item.defect else "good"
        path, kind = item.files[0]
        if item.kind == "part":
            folder = path.parent
            out.append((rp.name, judge_part(folder, truth, folder.parent, rp, models[size])))
        else:
            out.append((rp.name, judge_image(path, kind, truth, path.parent, rp, models[size])))
    return out


def figures(judged: list[tuple[str, Judged]], profiles: dict[str, ResolvedProfile]) -> dict[str, Any]:
    """Per profile and view kind: the counts `cellctl eval` reports (no item lists)."""
    out: dict[str, Any] = {}
    for name in profiles:
        mine = [j for p, j in judged if p == name]
        kinds = sorted({j.kind for j in mine})
        out[name] = {kind: tally(j for j in mine if j.kind == kind) for kind in kinds}
    return out


def whole_parts(judged: list[tuple[str, Judged]], heldout: Sequence[Item]) -> list[tuple[str, Judged]]:
    """The held-out items of each part judged together, as the daemon judges a part on all its
    views: REJECT if any item is, else RECHECK if any item is, else PASS; defective if any of
    its items is. An indication its head frame shows only at a tile's edge and the strip shows
    whole is found once, as in the cell (the gate's "no escape per part")."""
    groups: dict[tuple[str, str], list[Judged]] = {}
    for (profile, j), item in zip(judged, heldout, strict=True):
        groups.setdefault((profile, item.part_key), []).append(j)
    out = []
    for (profile, key), items in groups.items():
        truth = "defect" if any(j.truth == "defect" for j in items) else "good"
        causes = tuple(dict.fromkeys(c for j in items for c in j.causes))
        views = tuple(v for j in items for v in j.views)
        out.append((profile, Judged(key, "part", truth, combine([j.decision for j in items]), causes, views)))
    return out


def _decision(view: ViewResult, threshold: float) -> str:
    if not view.trusted:
        return "not trusted"
    return "defect" if view.score is not None and view.score >= threshold else "clean"


def compare(
    fp32: list[tuple[str, Judged]], int8: list[tuple[str, Judged]], profiles: dict[str, ResolvedProfile]
) -> dict[str, Any]:
    """How many held-out items and views INT8 decides otherwise than FP32, with the first few."""
    items = views = 0
    differing_items: list[str] = []
    differing_views: list[str] = []
    for (name, a), (_, b) in zip(fp32, int8, strict=True):
        items += 1
        if a.called != b.called:
            differing_items.append(f"{a.name}: fp32 {a.called}, int8 {b.called}")
        threshold = profiles[name].profile.decision.threshold
        for va, vb in zip(a.views, b.views, strict=False):
            views += 1
            da, db = _decision(va, threshold), _decision(vb, threshold)
            if da != db:
                differing_views.append(f"{a.name} {va.name}: fp32 {da}, int8 {db}")
        views += abs(len(a.views) - len(b.views))
    return {
        "items": items,
        "views": views,
        "items_differing": len(differing_items),
        "views_differing": len(differing_views),
        "first": (differing_items + differing_views)[:10],
    }


def _guard_figures(g: dict[str, Any]) -> dict[str, Any]:
    keep = ("threshold", "false_alarm_rate", "shrinkage", "fit", "skipped_images")
    return {k: g[k] for k in keep if k in g} | {"val": g["holdout"]}
