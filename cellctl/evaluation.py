"""The daemon's decision path measured on labelled images (``cellctl eval``).

Nothing here decides: every image or part goes through ``cellctl.inspection`` (locate, tile,
guard, score, decide), the code the daemon runs on a delivered frame, and its outcome is
counted against the folder it came from. Two layouts (``cellctl sim --export`` writes both):

- images, ``DIR/{head,shank}/{good,defect}/*.png``: a head image is one head frame (it may
  give more than one tile), a shank image one strip; each is inspected alone
  (``inspect_image``) and its outcome is that inspection's decision.
- parts, ``DIR/parts/{good,defect}/<part_id>/`` holding ``head<angle>.png`` for each of the
  profile's head positions and ``strip.png``: each part is inspected whole (``inspect_part``,
  head frames in the profile's order) exactly as the daemon inspects it.

Outcomes: PASS is called "good", REJECT "defect", RECHECK "recheck" with its reason. A file
that cannot be read (not an image, truncated, not 8-bit, a header claiming more pixels than
any camera delivers, no regular file: a folder, a FIFO or a broken symbolic link named as an
image) or is missing from a part counts as RECHECK, as the daemon RECHECKs a part whose frame
it cannot use, and is named in the report's ``unreadable`` list with why: it is never
silently dropped, and the totals add up to the files (or part folders) there are. A part's
``part.json`` that cannot be used (not the simulator's, nested too deeply, a number that is
not finite) changes nothing of its outcome: the part is left out of the ``drawn`` breakdown
(as ``unrecorded``) and named in ``bad_records``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellctl.config import ResolvedProfile
from cellctl.decision import Decision, ViewResult
from cellctl.drawn import RECORD, BadRecord, Drawn, breakdown, drawn_record
from cellctl.inspection import Frame, Inspection, Model, inspect_image, inspect_part
from cellctl.outcome import Outcome
from cellctl.ranking import item_score, ranking
from cellctl.text import printable
from cellctl.vision.images import image_files, labelled_images, read_camera_image
from cellctl.vision.preprocess import InvalidImage

CALLED = {Outcome.PASS: "good", Outcome.REJECT: "defect", Outcome.RECHECK: "recheck"}
LABELS = ("good", "defect")
PARTS = "parts"  # the folder of the parts layout under DIR
UNLABELLED = "unlabelled"  # beside good/ and defect/: a capture export waiting to be sorted
STRIP_FILE = "strip.png"
_HEAD_ANGLE = re.compile(r"(?:^|_)head(-?\d+(?:\.\d+)?)$")  # "<part>_head90" -> 90
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def head_file(angle_deg: float) -> str:
    """The file of the head frame at ``angle_deg`` in a part folder: head0.png, head90.png."""
    return f"head{angle_deg:g}.png"


@dataclass(frozen=True)
class Judged:
    """One image (or part) and what the decision path made of it."""

    name: str  # the file (or part folder) relative to DIR
    kind: str  # "head" | "shank" | "part"
    truth: str  # "good" | "defect": the folder it is in
    decision: Decision
    causes: tuple[str, ...]  # what stood against a PASS; empty unless RECHECK
    views: tuple[ViewResult, ...] = ()
    coverage: dict[str, float] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()  # "<file>: why" of each file that could not be used
    drawn: Drawn | None = None  # what a rendered part carries (its part.json); parts only
    bad_record: str | None = None  # "<part.json>: why" when the part's record cannot be used

    @property
    def called(self) -> str:
        return CALLED[self.decision.outcome]


def causes(inspection: Inspection) -> tuple[str, ...]:
    """Everything that stood against a PASS of an inspection that came to RECHECK, each once:
    the part-level problems (not located, not covered), a model fault, the views the guard
    did not trust. The decision's reason names the first few; these are all of them."""
    if inspection.decision.outcome is not Outcome.RECHECK:
        return ()
    found = list(inspection.problems)
    if inspection.fault is not None:
        found.append(inspection.fault.reason)  # no view has a score: listing each says nothing more
    else:
        found += [f"{v.name}: {v.problem or 'no score'}" for v in inspection.views if not v.trusted]
    return tuple(found) or (inspection.decision.reason,)


def reason_pattern(text: str) -> str:
    """A reason with its numbers as ``#``: the same cause on different images counts once."""
    return _NUMBER.sub("#", text)


def judged_inspection(name: str, kind: str, truth: str, inspection: Inspection) -> Judged:
    """What one inspection of a labelled image (or part) came to."""
    return Judged(name, kind, truth, inspection.decision, causes(inspection), inspection.views, inspection.coverage)


def _unreadable(name: str, kind: str, truth: str, files: Sequence[tuple[Path, str]], root: Path) -> Judged:
    """RECHECK for files that could not be used, each (path, why): the reason and the causes
    name the file by its name (the cause patterns count alike files together), the
    ``unreadable`` list by its path under DIR."""
    whys = tuple(f"{path.name}: {why}" for path, why in files)
    decision = Decision(Outcome.RECHECK, "cannot use " + "; ".join(whys), None, None)
    found = whys if kind == "part" else tuple(f"unreadable: {why}" for _, why in files)
    return Judged(name, kind, truth, decision, found, unreadable=tuple(f"{_relative(p, root)}: {w}" for p, w in files))


def _why(exc: InvalidImage, path: Path) -> str:
    """Why the file cannot be used, without its name (the reader's message starts with it)."""
    return str(exc).removeprefix(f"{printable(str(path))}: ")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def head_angle(path: Path) -> float:
    """The turntable angle in a head image's name (``<part>_head90.png``); 0 if it has none.
    Only the views' names depend on it (head@90)."""
    m = _HEAD_ANGLE.search(path.stem)
    return float(m.group(1)) if m else 0.0


def judge_image(path: Path, kind: str, truth: str, root: Path, rp: ResolvedProfile, model: Model) -> Judged:
    """One head frame or one strip, through the daemon's decision path for that kind."""
    name = _relative(path, root)
    try:
        data, fmt = read_camera_image(path, kind, rp.profile)
    except InvalidImage as exc:
        return _unreadable(name, kind, truth, [(path, _why(exc, path))], root)
    return judged_inspection(name, kind, truth, inspect_image(Frame(data, fmt), kind, rp, model, head_angle(path)))


def judge_part(folder: Path, truth: str, root: Path, rp: ResolvedProfile, model: Model) -> Judged:
    """One part folder, inspected whole as the daemon inspects a part; RECHECK, with the files
    named, when a view is missing or unreadable (the daemon RECHECKs a part without all views)."""
    name = _relative(folder, root)
    files = [folder / head_file(a) for a in rp.profile.head_positions_deg] + [folder / STRIP_FILE]
    kinds = ["head"] * (len(files) - 1) + ["shank"]
    frames: list[Frame] = []
    bad: list[tuple[Path, str]] = []
    for path, kind in zip(files, kinds, strict=True):
        if not path.exists() and not path.is_symlink():  # a dangling or looping link is read, and named
            bad.append((path, "missing"))
            continue
        try:
            frames.append(Frame(*read_camera_image(path, kind, rp.profile)))
        except InvalidImage as exc:
            bad.append((path, _why(exc, path)))
    try:
        drawn, bad_record = drawn_record(folder), None
    except BadRecord as exc:  # the part is judged all the same; it is only not in the breakdown
        drawn, bad_record = None, f"{_relative(folder / RECORD, root)}: {exc}"
    if bad:
        return dataclasses.replace(_unreadable(name, "part", truth, bad, root), drawn=drawn, bad_record=bad_record)
    whole = judged_inspection(name, "part", truth, inspect_part(frames[:-1], frames[-1], rp, model))
    return dataclasses.replace(whole, drawn=drawn, bad_record=bad_record)


def part_folders(root: Path) -> list[tuple[Path, str]]:
    """(folder, truth) of every DIR/parts/{good,defect}/<part_id>/, sorted."""
    return [
        (p, label)
        for label in LABELS
        if (root / PARTS / label).is_dir()
        for p in sorted((root / PARTS / label).iterdir())
        if p.is_dir()
    ]


def _unsorted(root: Path, *kinds: str) -> str:
    """A hint when the only items wait in ``unlabelled/`` (a capture export not yet sorted)."""
    folders = [root / k / UNLABELLED for k in kinds]
    waiting = sum(len(image_files(f)) + sum(p.is_dir() for p in f.iterdir()) for f in folders if f.is_dir())
    return f" ({waiting} waiting in unlabelled/: sort them into good/ and defect/ first)" if waiting else ""


def evaluate(rp: ResolvedProfile, model: Model, root: Path) -> dict[str, Any]:
    """The images layout: per kind and in total. FileNotFoundError if it holds no images."""
    items = labelled_images(root)
    if not items:
        hint = f" (it has {PARTS}/: use --parts)" if part_folders(root) else _unsorted(root, "head", "shank")
        raise FileNotFoundError(f"no images under {root}/{{head,shank}}/{{good,defect}}/{hint}")
    judged = [
        judge_image(path, kind, "defect" if defective else "good", root, rp, model) for path, kind, defective in items
    ]
    return report(rp, model, "images", judged, ("head", "shank"))


def evaluate_parts(rp: ResolvedProfile, model: Model, root: Path) -> dict[str, Any]:
    """The parts layout: one outcome per part. FileNotFoundError if it holds no part folders."""
    folders = part_folders(root)
    if not folders:
        raise FileNotFoundError(f"no part folders under {root}/{PARTS}/{{good,defect}}/{_unsorted(root, PARTS)}")
    judged = [judge_part(folder, truth, root, rp, model) for folder, truth in folders]
    return report(rp, model, "parts", judged, ("part",))


def report(
    rp: ResolvedProfile, model: Model, mode: str, judged: Sequence[Judged], kinds: Sequence[str]
) -> dict[str, Any]:
    """Figures per kind (and in total when there is more than one kind), the unreadable files,
    and every item with its outcome, reason and views."""
    by_kind = {k: tally(j for j in judged if j.kind == k) for k in kinds if any(j.kind == k for j in judged)}
    if len(kinds) > 1:
        by_kind["total"] = tally(judged)
    drawn = breakdown((j.truth, j.called, j.drawn) for j in judged) if mode == "parts" else None
    return {
        "profile": rp.name,
        "mode": mode,
        "threshold": rp.profile.decision.threshold,
        "ood_threshold": model.ood_threshold,
        "model": {"path": str(model.path), "sha256": model.sha256},
        **by_kind,
        **({"drawn": drawn} if drawn is not None else {}),
        "unreadable": [why for j in judged for why in j.unreadable],
        **({"bad_records": [j.bad_record for j in judged if j.bad_record]} if mode == "parts" else {}),
        "items": [item(j) for j in judged],
    }


def tally(judged: Iterable[Judged]) -> dict[str, Any]:
    """n, the confusion (truth x called), escapes, false rejects, rechecks, their rates and the
    recheck causes counted by pattern (each pattern once per item)."""
    judged = list(judged)
    confusion = {t: {c: 0 for c in ("good", "defect", "recheck")} for t in LABELS}
    reasons: Counter[str] = Counter()
    n = 0
    for j in judged:
        n += 1
        confusion[j.truth][j.called] += 1
        reasons.update({reason_pattern(c) for c in j.causes})
    good, defect = sum(confusion["good"].values()), sum(confusion["defect"].values())
    escapes, false_rejects = confusion["defect"]["good"], confusion["good"]["defect"]
    rechecks = confusion["good"]["recheck"] + confusion["defect"]["recheck"]
    correct = confusion["good"]["good"] + confusion["defect"]["defect"]
    return {
        "n": n,
        "good": good,
        "defective": defect,
        "confusion": confusion,
        "escapes": escapes,
        "false_rejects": false_rejects,
        "rechecks": rechecks,
        "accuracy": _rate(correct, n),  # a RECHECK is never correct: it is work for a person
        "escape_rate": _rate(escapes, defect),
        "false_reject_rate": _rate(false_rejects, good),
        "recheck_rate": _rate(rechecks, n),
        "recheck_reasons": dict(reasons.most_common()),
        "ranking": ranking((j.truth, item_score(j.views)) for j in judged),
    }


def _rate(count: int, of: int) -> float | None:
    return round(count / of, 4) if of else None


def item(j: Judged) -> dict[str, Any]:
    return {
        "name": j.name,
        "kind": j.kind,
        "truth": j.truth,
        "called": j.called,
        "reason": j.decision.reason,
        "max_score": _finite(j.decision.max_score),
        "score": _finite(item_score(j.views)),
        "worst_view": j.decision.worst_view,
        "coverage": {k: round(v, 4) for k, v in j.coverage.items()},
        "views": [
            {"name": v.name, "score": _finite(v.score), "ood": _finite(v.ood), "problem": v.problem} for v in j.views
        ],
        **({"causes": list(j.causes)} if j.causes else {}),
        **({"drawn": _drawn(j.drawn)} if j.drawn is not None else {}),
    }


def _finite(value: float | None) -> float | None:
    return round(value, 6) if value is not None and math.isfinite(value) else None


def _drawn(drawn: Drawn) -> dict[str, Any]:
    return {k: v if v is None or isinstance(v, int) else round(v, 4) for k, v in dataclasses.asdict(drawn).items()}
