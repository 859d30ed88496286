"""Calibrating a model's guard on folders of labelled images: the work of `cellctl guard`.

Runs the model on every view (good and defective: the training distribution) of the --fit
folders (pooled ``features``), fits the whitening, appends the guard to the graph, runs the
guarded model on the --holdout views
and sets the threshold on the ``ood_score`` the graph itself gives (what the daemon will
compare), then writes the model with the guard's metadata and checks it as `cellctl check`
does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellctl import ood
from cellctl.config import ResolvedProfile, ViewSpec, file_sha256
from cellctl.inspection import Frame, image_tiles, model_inputs
from cellctl.ood.fit import (
    Threshold,
    Whitening,
    far_upper_bound,
    fit_whitening,
    min_holdout_views,
    pooled,
    threshold_at,
)
from cellctl.vision import InvalidImage
from cellctl.vision.images import labelled_images, read_camera_image

BATCH = 16  # views per onnxruntime run: bounded memory, whatever the folder holds
Sets = list[tuple[ResolvedProfile, Path]]  # (profile, folder of its images)


class Refused(Exception):
    """What the command cannot do with these arguments or files: one error line, exit 2."""


def views_of(rp: ResolvedProfile, path: Path, kind: str) -> tuple[np.ndarray, list[str]]:
    """One saved camera image -> (the N x 3 x S x S batch the daemon would score for it, why
    some of it would not be scored: the part not located, too little covered).

    The only place this command turns an image into model input: it must stay the daemon's
    own locate-and-tile (cellctl.inspection), or the guard is fitted on views it never scores.
    """
    frame, tiles, problems = tiles_of(rp, path, kind)
    return model_inputs(frame, tiles, rp), problems


def tiles_of(rp: ResolvedProfile, path: Path, kind: str) -> tuple[Frame, list[ViewSpec], list[str]]:
    """The image, the tiles the daemon would lay on it, and why some of it would not be scored
    (training needs where each tile lies, to label it by a mask)."""
    data, fmt = read_camera_image(path, kind, rp.profile)
    frame = Frame(data, fmt)
    tiles, problems = image_tiles(frame, kind, rp)
    return frame, tiles, problems


@dataclass
class Skipped:
    """Good images the daemon would not fully score (its own problems), left out of the fit."""

    count: int = 0
    first: list[str] = field(default_factory=list)  # a few "path: problem" lines to show

    def add(self, path: Path, problems: list[str]) -> None:
        self.count += 1
        if len(self.first) < 3:
            self.first.append(f"{path}: {'; '.join(problems)}")


# what a guard is fitted or thresholded on: (key "profile/kind", N x 3 x S x S views), the
# images it had to leave out counted in the Skipped it is given
ViewSource = Callable[[Skipped], Iterator[tuple[str, np.ndarray]]]


def good_views(rp: ResolvedProfile, root: Path, skipped: Skipped) -> Iterator[tuple[str, np.ndarray]]:
    """(kind, batch) of every labelled image under ``root`` that the daemon would score whole.

    Good and defective alike: an indication is in the model's distribution (it was trained on
    them). A guard fitted on good views only would call every defect out of distribution, and
    a defect the guard does not trust decides nothing: the part would be RECHECK, not REJECT.
    """
    items = [(path, kind) for path, kind, _ in labelled_images(root)]
    if not items:
        raise Refused(f"no images under {root}/{{head,shank}}/{{good,defect}}/")
    for path, kind in items:
        try:
            batch, problems = views_of(rp, path, kind)
        except InvalidImage as exc:
            message = str(exc)
            raise Refused(message if str(path) in message else f"{path}: {message}") from None
        if problems or not len(batch):
            skipped.add(path, problems or ["no views"])
            continue
        yield kind, batch


class Runner:
    """One onnxruntime session on a model's bytes, run in bounded batches."""

    def __init__(self, model: bytes, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Refused(f"onnxruntime cannot load the model: {first}") from None

    def run(self, output: str, batch: np.ndarray) -> np.ndarray:
        parts = [self._session.run([output], {"image": batch[i : i + BATCH]})[0] for i in range(0, len(batch), BATCH)]
        return np.concatenate(parts)


def folder_views(sets: Sets) -> ViewSource:
    """The views of every labelled image of every (profile, folder), keyed "profile/kind"."""

    def views(skipped: Skipped) -> Iterator[tuple[str, np.ndarray]]:
        for rp, root in sets:
            for kind, batch in good_views(rp, root, skipped):
                yield f"{rp.name}/{kind}", batch

    return views


def collect(
    runner: Runner, output: str, views: ViewSource, reduce: Callable[[np.ndarray], np.ndarray], skipped: Skipped
) -> dict[str, np.ndarray]:
    """``reduce(output)`` of every view, by key."""
    found: dict[str, list[np.ndarray]] = {}
    for key, batch in views(skipped):
        found.setdefault(key, []).append(reduce(runner.run(output, batch)))
    if not found:
        raise Refused(f"none of the images can be scored whole; {'; '.join(skipped.first)}")
    return {key: np.concatenate(values) for key, values in found.items()}


def guard(
    model_path: Path,
    out: Path,
    fit: Sets,
    holdout: Sets,
    far: float,
    alpha: float,
    threads: int,
) -> dict[str, Any]:
    """Fit on the --fit folders, threshold on the --holdout folders, write ``out``; the figures."""
    profiles = [rp for rp, _ in fit]
    return guard_views(model_path, out, folder_views(fit), folder_views(holdout), profiles, far, alpha, threads)


def guard_views(
    model_path: Path,
    out: Path,
    fit: ViewSource,
    holdout: ViewSource,
    profiles: list[ResolvedProfile],
    far: float,
    alpha: float,
    threads: int,
) -> dict[str, Any]:
    """Fit, threshold, write ``out``; the figures. ``fit`` and ``holdout`` give the views
    (folders for `cellctl guard`, a training split for `cellctl train`)."""
    import onnx

    from cellctl.inference import verify_model
    from cellctl.ood.graph import GuardError, add_guard, feature_output, remove_guard, set_metadata

    try:
        model = onnx.load(str(model_path))
        feature_output(model)
    except GuardError as exc:
        raise Refused(f"{model_path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types for a file that is no model
        raise Refused(f"{model_path} is not an ONNX model: {' '.join(str(exc).split())[:200]}") from None
    replaced = remove_guard(model)

    skipped = {"fit": Skipped(), "holdout": Skipped()}
    fit_x = collect(Runner(model.SerializeToString(), threads), ood.FEATURES, fit, pooled, skipped["fit"])
    try:
        whitening = fit_whitening(np.concatenate(list(fit_x.values())), alpha)
    except ValueError as exc:
        raise Refused(f"cannot fit the guard: {exc}") from None
    add_guard(model, whitening)
    # the threshold is set on the scores the guarded graph itself gives: what the daemon compares
    runner = Runner(model.SerializeToString(), threads)
    held = collect(runner, ood.OUTPUT, holdout, lambda s: s.astype(np.float64), skipped["holdout"])
    scores = np.concatenate(list(held.values()))
    if scores.size < min_holdout_views(far):
        raise Refused(
            f"the holdout has {scores.size} views; a false-alarm rate of {far:g} needs at least "
            f"{min_holdout_views(far)} (more parts in --holdout, or a higher --false-alarm-rate)"
        )
    if not np.isfinite(scores).all():
        raise Refused(f"{int((~np.isfinite(scores)).sum())} held-out views have a non-finite score")
    threshold = threshold_at(scores, far)
    for key, value in guard_metadata(whitening, threshold, [rp.name for rp in profiles]).items():
        set_metadata(model, key, value)
    onnx.save(model, str(out))
    sizes = {rp.profile.preprocess.input_size_px for rp in profiles}
    problems = [p for size in sizes for p in verify_model(out, size)]
    if problems:  # the file must be one `cellctl check` accepts; anything else is a bug here
        raise RuntimeError(f"the guarded model {out} fails its own check: {'; '.join(problems)}")
    return figures(model_path, out, whitening, threshold, fit_x, held, replaced) | {
        "skipped_images": {k: {"count": v.count, "first": v.first} for k, v in skipped.items()}
    }


def guard_metadata(whitening: Whitening, threshold: Threshold, profiles: list[str]) -> dict[str, str]:
    return {
        ood.THRESHOLD: repr(threshold.value),
        ood.FALSE_ALARM_RATE: repr(threshold.false_alarm_rate),
        ood.FIT_VIEWS: str(whitening.views),
        ood.HOLDOUT_VIEWS: str(threshold.views),
        ood.HOLDOUT_FALSE_ALARMS: str(threshold.false_alarms),
        ood.SHRINKAGE: repr(round(whitening.shrinkage, 6)),
        ood.PROFILES: ",".join(dict.fromkeys(profiles)),
    }


def figures(
    model: Path,
    out: Path,
    whitening: Whitening,
    threshold: Threshold,
    fit_x: dict[str, np.ndarray],
    held: dict[str, np.ndarray],
    replaced: bool,
) -> dict[str, Any]:
    scores = np.concatenate(list(held.values()))
    t = threshold.value
    return {
        "model": str(model),
        "out": str(out),
        "sha256": file_sha256(out),
        "replaced_guard": replaced,
        "shrinkage": round(whitening.shrinkage, 6),
        "threshold": t,
        "false_alarm_rate": threshold.false_alarm_rate,
        "fit": {"views": whitening.views, "by": {k: len(v) for k, v in fit_x.items()}},
        "holdout": {
            "views": threshold.views,
            "false_alarms": threshold.false_alarms,
            "false_alarm_rate": round(threshold.false_alarms / threshold.views, 6),
            "false_alarm_rate_upper95": round(far_upper_bound(threshold.false_alarms, threshold.views), 6),
            "score": {q: round(float(np.percentile(scores, p)), 3) for q, p in (("p50", 50), ("p99", 99))}
            | {"max": round(float(scores.max()), 3)},
            "by": {
                k: {"views": len(v), "false_alarms": int((v > t).sum()), "max_score": round(float(v.max()), 3)}
                for k, v in held.items()
            },
        },
    }
