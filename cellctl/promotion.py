"""The deployment gate (``cellctl promote PACKAGE --profile NAME``): a model package's INT8
model goes into a profile only if its own measurements say it may.

Checked, on the package's held-out parts of that profile (card.json, measured by
``cellctl train`` through the daemon's decision path, each part's items judged together as the
daemon judges a part), against the profile's ``promotion`` limits: enough defective parts and
no escape among them; false rejects and rechecks within the limits; INT8 and FP32 deciding
every held-out item and view alike; all of it measured at the profile's decision threshold
and recheck threshold as they are now. The card is validated first, whole, as `cellctl check`
validates it (``cellctl.config.resolve.PackageCard``): a malformed or impossible card (counts
that are no whole numbers >= 0 or do not add up) is refused with the one line naming its
JSON path. Then the package's INT8 file is checked to be the one
the card measured (sha256), and timed side by side with the profile's current model on this
machine (``cellctl bench``'s interleaved rounds): it must be at least as fast, within
``speed_tolerance`` for timing noise.

Promoting copies the INT8 file next to the current model (``models/student-int8-<sha12>.onnx``;
the current file is left where it is, so the previous model stays runnable by pointing the
profile back), keeps the profile as it was beside it (``<name>.yaml.before-<sha12>``) and
rewrites only ``model.path`` and ``model.sha256`` (comments and layout kept), then loads the
profile as the daemon would. Records carry the model sha256 of every verdict, so which model
judged which part stays known across promotions.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellctl.config import ResolvedProfile, file_sha256, resolve_profile
from cellctl.config.package_card import CardError, PackageCard, read_package_card

CARD, INT8 = "card.json", "student-int8.onnx"


class NotPromotable(Exception):
    """The package cannot be judged at all (no card, no INT8 file): the one line shown."""


@dataclass
class Verdict:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, ok: bool, text: str) -> None:
        (self.passed if ok else self.failed).append(text)


def read_card(package: Path) -> PackageCard:
    """The package's card.json, validated (``cellctl.config.resolve.read_package_card``, as
    `cellctl check` reads it): NotPromotable with one line naming the file, the JSON path and
    what is allowed."""
    path = package / CARD
    if not os.path.lexists(path):  # a card.json there that cannot be read is refused below, with why
        raise NotPromotable(f"{package}: no {CARD} (not a model package of `cellctl train`)")
    try:
        return read_package_card(path)
    except CardError as exc:
        raise NotPromotable(str(exc)) from None


def _decision_text(threshold: float, recheck: float | None) -> str:
    return f"threshold {threshold}, recheck_threshold {'unset' if recheck is None else recheck}"


def judge(card: PackageCard, rp: ResolvedProfile) -> Verdict:
    """The held-out checks against the profile's limits (no timing)."""
    limits, now = rp.profile.promotion, rp.profile.decision
    v = Verdict()
    measured = card.measured_decision(rp.name)
    if measured is None:
        v.check(
            False,
            f"the card does not record the decision threshold its {rp.name} figures were measured at "
            f"(heldout_decision.{rp.name}): re-measure the package with this version's `cellctl train`",
        )
    else:
        same = (measured.threshold, measured.recheck_threshold) == (now.threshold, now.recheck_threshold)
        v.check(
            same,
            f"held-out figures measured at {_decision_text(measured.threshold, measured.recheck_threshold)}; "
            f"profile {rp.name} decides at {_decision_text(now.threshold, now.recheck_threshold)}"
            + ("" if same else " (figures measured at another threshold say nothing of this one)"),
        )
    by_kind = card.heldout.int8.get(rp.name)
    if not by_kind:
        v.check(False, f"the package has no held-out items of profile {rp.name}")
        return v
    keys = ("n", "good", "defective", "escapes", "false_rejects", "rechecks")
    items = {k: sum(getattr(t, k) for t in by_kind.values()) for k in keys}
    v.figures["heldout_int8"] = items | {"by_kind": {kind: t.model_dump() for kind, t in by_kind.items()}}
    # judged per part, as the daemon judges (a card of an older factory has items only: judged so)
    if card.heldout_parts is None:
        totals, unit = items, "items"
    else:
        part = card.heldout_parts.int8.get(rp.name, {}).get("part")
        if part is None:
            v.check(False, f"the package has no held-out parts of profile {rp.name} (heldout_parts.int8.{rp.name})")
            return v
        totals, unit = part.model_dump(), "parts"
        v.figures["heldout_parts_int8"] = totals
    v.check(
        totals["defective"] >= limits.min_defective,
        f"{totals['defective']} defective held-out {unit} (promotion.min_defective {limits.min_defective})",
    )
    missed = (
        f" ({items['escapes']} of {items['defective']} defective images missed by their own view)"
        if unit == "parts"
        else ""
    )
    v.check(
        totals["escapes"] == 0,
        f"{totals['escapes']} escapes of {totals['defective']} defective held-out {unit}{missed}",
    )
    fr = totals["false_rejects"] / totals["good"] if totals["good"] else 0.0
    v.check(
        totals["good"] > 0 and fr <= limits.max_false_reject_rate,
        f"false rejects {totals['false_rejects']} of {totals['good']} good {unit} ({fr:.2%}; "
        f"promotion.max_false_reject_rate {limits.max_false_reject_rate:.2%})",
    )
    rr = totals["rechecks"] / totals["n"] if totals["n"] else 0.0
    v.check(
        totals["n"] > 0 and rr <= limits.max_recheck_rate,
        f"rechecks {totals['rechecks']} of {totals['n']} {unit} ({rr:.2%}; promotion.max_recheck_rate "
        f"{limits.max_recheck_rate:.2%})",
    )
    same_calls = card.int8_vs_fp32
    v.check(
        same_calls.items_differing == 0 and same_calls.views_differing == 0,
        f"INT8 and FP32 decide {same_calls.items_differing} items and {same_calls.views_differing} "
        f"views of {same_calls.views} otherwise",
    )
    return v


def time_against(rp: ResolvedProfile, candidate: Path, threads: int, rounds: int, v: Verdict) -> None:
    """Both models on the same inputs, interleaved; the candidate within tolerance of the current."""
    from cellctl.benchmark import bench
    from cellctl.vision.tiles import nominal_tile_count

    size = rp.profile.preprocess.input_size_px
    views = nominal_tile_count(rp.profile)
    timed = bench({"current": rp.model_path, "candidate": candidate}, views, size, rounds, threads)
    key = f"per_part_batch{views}"
    current, new = (float(timed[n][key]["p50_ms"]) for n in ("current", "candidate"))  # type: ignore[index]
    tolerance = rp.profile.promotion.speed_tolerance
    v.figures["speed"] = {"views": views, "current_p50_ms": current, "candidate_p50_ms": new, "rounds": rounds}
    v.check(
        new <= current * (1.0 + tolerance),
        f"INT8 {new:.1f} ms per part ({views} views) against the current model's {current:.1f} ms "
        f"(promotion.speed_tolerance {tolerance:.0%})",
    )


def promote(rp: ResolvedProfile, package: Path, sha256: str) -> Path:
    """Copy the INT8 model beside the current one, keep the profile as it was, point the
    profile at the new model; the new model's path. Loads the rewritten profile as the daemon
    would, and puts the old one back if that fails."""
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    models = rp.model_path.parent
    target = models / f"student-int8-{sha256[:12]}.onnx"
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(package / INT8, partial)
        partial.replace(target)
    before = rp.path.with_name(f"{rp.path.name}.before-{sha256[:12]}")
    shutil.copyfile(rp.path, before)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    data = yaml.load(rp.path.read_text())
    data["model"]["path"] = os.path.relpath(target, rp.path.parent)  # as the profile names models: relative
    data["model"]["sha256"] = DoubleQuotedScalarString(sha256)
    partial_profile = rp.path.with_name(rp.path.name + ".partial")
    with partial_profile.open("w") as f:
        yaml.dump(data, f)
    partial_profile.replace(rp.path)
    try:
        resolve_profile(rp.path)
    except Exception:
        shutil.copyfile(before, rp.path)
        raise
    return target


def candidate_sha(package: Path, card: PackageCard, v: Verdict) -> str | None:
    """The INT8 file's sha256 if it is the file the card measured."""
    path = package / INT8
    if not path.is_file():
        v.check(False, f"no {INT8} in {package}")
        return None
    sha = file_sha256(path)
    v.check(sha == card.models.int8.sha256, f"{INT8} is the model the card measured (sha256)")
    return sha
