"""One training run, from labelled folders to a model package (``cellctl train``).

    OUT/student-fp32.onnx   the student with its out-of-distribution guard
    OUT/student-int8.onnx   the same, quantized to INT8 and guarded again on its own features
    OUT/card.json           every figure below, measured; OUT/MODEL_CARD.md the same for people
    OUT/split.json          which part went to train, val and heldout
    OUT/train.json          the run's config, seeds and library versions

The steps: find the items (items.py), split them by part (split.py), tile every item with the
daemon's code (bags.py, cached in OUT/work/), train the teachers if any, then the student, on
the train split, choosing each network's epoch on val (fit.py); export the student, fit its
guard on the train views and set its threshold on the val views, quantize it with calibration
views drawn from the train split, guard the INT8 model the same way; measure both on the
held-out split through the daemon's decision path (cellctl.evaluation: locate, tile, guard,
decide), and the teachers on the same parts. OUT/work/ holds the tiles and a checkpoint per
network (``--resume`` carries on from them) and is removed once the package is whole.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cellctl.config import ResolvedProfile
from cellctl.ood.fit import min_holdout_views
from cellctl.train.bags import Bags, cached_bags
from cellctl.train.fit import Budget, FitConfig, Fitted, Refused, bag_max, fit, tile_logits
from cellctl.train.items import Item, find_items
from cellctl.train.masks import POSITIVE
from cellctl.train.split import SIDES, Split, split_by_part

FP32, INT8 = "student-fp32.onnx", "student-int8.onnx"
WORK = "work"


@dataclass(frozen=True)
class TrainRequest:
    out: Path
    data: Sequence[tuple[ResolvedProfile, Path]]  # (profile, folder in the eval layout)
    student: FitConfig
    teachers: tuple[str, ...] = ()
    teacher_epochs: int = 4
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    budget_s: float | None = None
    resume: bool = False
    workers: int = 2
    threads: int = 2
    false_alarm_rate: float = 0.001
    calibration_views: int = 300
    keep_float_max: int = 2  # blocks INT8 may keep float where quantization changes decisions (0: none)
    keep_work: bool = False


def run(req: TrainRequest) -> dict[str, Any]:
    """Train and write the package; the card (also written as card.json)."""
    import torch

    started = time.monotonic()
    torch.set_num_threads(req.threads)
    profiles = {rp.name: rp for rp, _ in req.data}
    items = [i for rp, root in req.data for i in find_items(root, rp.name, rp.profile.head_positions_deg)]
    if not items:
        folders = ", ".join(str(root) for _, root in req.data)
        raise Refused(f"no labelled images in {folders} (DIR/{{head,shank}}/{{good,defect}}/ or DIR/parts/...)")
    split = split_by_part(items, req.fractions, req.student.seed)
    req.out.mkdir(parents=True, exist_ok=True)
    work = req.out / WORK
    _write(req.out / "split.json", split_record(split, items))
    bags, cached = cached_bags(items, profiles, work / "tiles.npz", req.workers)
    sides = {side: bags.by_side(split.side_of, side) for side in SIDES}
    _guard_can_be_thresholded(sides["val"], req.false_alarm_rate)
    budget = Budget(req.budget_s)
    timings: dict[str, float] = {"tiles_s": round(time.monotonic() - started, 1)}

    teachers, soft = _teachers(req, sides, budget)
    t0 = time.monotonic()
    student = fit(
        req.student, sides["train"], sides["val"], work / "student.ckpt", budget, soft=soft, resume=req.resume
    )
    timings["student_s"] = round(time.monotonic() - t0, 1)

    from cellctl.train.deploy import deploy  # onnx, onnxruntime: after the training that needs neither

    deployed = deploy(req, student.net, sides, split.items(items, "heldout"), profiles)
    card = {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "package": str(req.out),
        "data": {
            "folders": [{"profile": rp.name, "dir": str(root)} for rp, root in req.data],
            "items": len(items),
            "tiled": len(bags),
            "tiles": len(bags.x),
            "left_out": list(bags.left_out),
            "tiles_from_cache": cached,
            "masked": masked(bags),
        },
        "split": split.summary(items),
        "student": _network(req.student, student)
        | {
            "distilled_from": [t["arch"] for t in teachers],
            # as the teachers are measured: the network alone, beside them
            "heldout_torch": bag_figures(student, sides["heldout"]),
        },
        "teachers": teachers,
        "distillation": (
            {"alpha": req.student.alpha, "temperature": req.student.temperature, "mode": "offline, per tile"}
            if teachers
            else None
        ),
        **deployed,
        "timings": timings | {"total_s": round(time.monotonic() - started, 1)},
        "resumed": req.resume,
        "machine": machine(),
        "versions": versions(),
    }
    _write(req.out / "card.json", card)
    _write(req.out / "train.json", train_record(req))
    from cellctl.train.card import markdown

    (req.out / "MODEL_CARD.md").write_text(markdown(card))
    if not req.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return card


def masked(bags: Bags) -> dict[str, int]:
    """How many defective items a mask located (their tiles trained one by one), and the
    positive tiles it gave."""
    positives = [int((bags.labels_of(b) == POSITIVE).sum()) for b in range(len(bags)) if bags.label[b] > 0.5]
    return {
        "defective_items": len(positives),
        "located_by_mask": sum(p > 0 for p in positives),
        "positive_tiles": sum(positives),
    }


def _guard_can_be_thresholded(val: Bags, far: float) -> None:
    """Refused before any training: the guard's threshold is set on the val views at ``far``,
    and too few views cannot show that rate (found at the end, it would waste the whole run)."""
    views, needed = int(val.count.sum()), min_holdout_views(far)
    if views < needed:
        raise Refused(
            f"the val split has {views} views; the guard's --false-alarm-rate {far:g} needs at least {needed} "
            "(more parts, a larger val fraction in --split, or a higher --false-alarm-rate)"
        )


def _teachers(
    req: TrainRequest, sides: dict[str, Bags], budget: Budget
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """Train each teacher on the train split; their averaged softened tile outputs (indexed
    like the tiles), or None without teachers."""
    if not req.teachers:
        return [], None
    train = sides["train"]
    index = train.tile_index()
    soft = np.zeros(len(train.x), np.float32)
    found = []
    for k, arch in enumerate(req.teachers):
        cfg = dataclasses.replace(
            req.student, arch=arch, epochs=req.teacher_epochs, init=None, seed=req.student.seed + k + 1
        )
        t0 = time.monotonic()
        fitted = fit(
            cfg,
            train,
            sides["val"],
            req.out / WORK / f"teacher{k}-{arch}.ckpt",
            budget,
            resume=req.resume,
            label=f"teacher {arch}",
        )
        z = tile_logits(fitted.net, train)
        soft[index] += 1.0 / (1.0 + np.exp(-z / req.student.temperature)) / len(req.teachers)
        record = _network(cfg, fitted) | {"train_s": round(time.monotonic() - t0, 1)}
        record["heldout"] = bag_figures(fitted, sides["heldout"])
        found.append(record)
    return found, soft


def bag_figures(fitted: Fitted, bags: Bags) -> dict[str, Any]:
    """A network in torch on held-out bags, per kind: escapes and false rejects at 0.5 of its
    highest tile (no guard: what the network alone tells apart)."""
    if not len(bags):
        return {}
    p = 1.0 / (1.0 + np.exp(-bag_max(bags, tile_logits(fitted.net, bags))))
    out: dict[str, Any] = {}
    for kind in sorted({i.kind for i in bags.items}):
        mask = np.array([i.kind == kind for i in bags.items])
        y, q = bags.label[mask], p[mask]
        out[kind] = {
            "n": int(mask.sum()),
            "defective": int((y > 0.5).sum()),
            "escapes": int(((y > 0.5) & (q < 0.5)).sum()),
            "false_rejects": int(((y < 0.5) & (q >= 0.5)).sum()),
        }
    return out


def _network(cfg: FitConfig, fitted: Fitted) -> dict[str, Any]:
    from cellctl.train.nets import build, parameters

    return {
        "arch": cfg.arch,
        "parameters": parameters(build(cfg.arch)),
        "epochs_planned": cfg.epochs,
        "epochs_run": len(fitted.history),
        "best_epoch": fitted.best_epoch,
        "stopped_by": fitted.stopped,
        "epochs_s": round(sum(h["s"] for h in fitted.history), 1),  # every epoch's, across resumes
        "history": fitted.history,
    }


def split_record(split: Split, items: Sequence[Item]) -> dict[str, Any]:
    return {
        "fractions": list(split.fractions),
        "seed": split.seed,
        "summary": split.summary(items),
        "parts": dict(sorted(split.side_of.items())),
    }


def train_record(req: TrainRequest) -> dict[str, Any]:
    return {
        "data": [{"profile": rp.name, "dir": str(root)} for rp, root in req.data],
        "student": req.student.key(),
        "teachers": list(req.teachers),
        "teacher_epochs": req.teacher_epochs,
        "fractions": list(req.fractions),
        "budget_s": req.budget_s,
        "false_alarm_rate": req.false_alarm_rate,
        "calibration_views": req.calibration_views,
        "keep_float_max": req.keep_float_max,
        "threads": req.threads,
        "versions": versions(),
    }


def training_views(bags: Bags, limit: int | None, seed: int) -> Iterator[np.ndarray]:
    """Up to ``limit`` tiles of ``bags`` (a seeded draw, in order), as the model's float input."""
    index = bags.tile_index()
    if limit is not None and len(index) > limit:
        index = np.sort(np.random.default_rng(seed).choice(index, limit, replace=False))
    for i in index:
        yield bags.x[i].astype(np.float32) / 255.0


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("cellctl", "torch", "onnx", "onnxruntime", "numpy", "opencv-python-headless"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "system": platform.platform()}


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
