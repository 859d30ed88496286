"""``cellctl sim --export DIR``: labelled renders in both layouts ``cellctl eval`` reads.

Each part is shot as the simulated cameras shoot it (the same renderer calls, pixel formats
and gain 1: the shipped profiles light the part at the nominal intensity) and written, PNG
(lossless: eval reads back the pixels the daemon would have been given), twice:

- per part: DIR/parts/{good,defect}/<part_id>/head<angle>.png for each of the profile's head
  positions, strip.png, and part.json (the drawn part: its indications, their relevance,
  the look it was rendered with). Good or defect is the part's truth: defective when it
  carries at least one indication at or above the profile's minimum length AND contrast
  (``inspection.min_indication_length_mm`` / ``min_indication_contrast``). Smaller
  indications are drawn too and do not make a part defective; parts carrying them are
  counted under ``parts/with_subthreshold``.
- per image: DIR/head/{good,defect}/<part_id>_head<angle>.png and
  DIR/shank/{good,defect}/<part_id>_strip.png, hard links to the part's files where the
  file system allows. The label is what the image shows, not the part's truth (a head crack
  is on one side only), by sim/truth.py over the area the daemon tiles: 'defect' when a
  relevant indication is clearly visible there (in a head frame: at the contrast drawn in
  that view, not at a grazing angle), 'good' when no indication at all is drawn there; an
  image that shows only a sub-threshold one, or a relevant one only in part, is left out of
  this layout (``head/left_out``, ``shank/left_out``): a label must be unambiguous.
- per defective image: DIR/masks/{head,shank}/<same name>.png, where the indications are
  (cellctl/train/masks.py: 255 along a relevant indication's path, 128 along one below the
  minimum or seen too obliquely), so training can label each tile, not only the image.

Where the daemon tiles: a head frame from the head's top over one head tile (the tile is
aligned with the head's top, so it sees the upper shank as well); a strip from the
under-head face to the shank's end (cellctl/vision/tiles.py).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellctl.commands.common import find_profile
from cellctl.config import ResolvedProfile
from cellctl.evaluation import PARTS, STRIP_FILE, head_file
from cellctl.sim.conditions import DEFAULT, PRESETS, Conditions
from cellctl.sim.part import SimPart, sample_part
from cellctl.sim.scene import FRAME_SHAPE, HeadRender, Renderer, StripRender
from cellctl.sim.sensor import encode
from cellctl.sim.truth import head_relevant, strip_relevant, tile_label
from cellctl.train.masks import MASKS, draw_mask, write_mask
from cellctl.vision.images import link_or_copy, write_camera_image


@dataclass(frozen=True)
class Shots:
    """One part as the cameras deliver it."""

    part: SimPart
    heads: list[tuple[np.ndarray, str]]  # in the profile's head_positions_deg order
    strip: tuple[np.ndarray, str]
    head_renders: list[HeadRender]
    strip_render: StripRender


def shoot(renderer: Renderer, rp: ResolvedProfile, part: SimPart) -> Shots:
    """The part's head frames and strip, rendered and encoded as SimFrameCamera and
    SimLineScanCamera do at gain 1."""
    p = rp.profile
    renders = [renderer.head_view(part, a) for a in p.head_positions_deg]
    strip = renderer.strip(part, p.line_scan.lines_per_revolution, p.line_scan.line_width_px)
    fmt, line_fmt = p.frame_camera.pixel_format, p.line_scan.pixel_format
    return Shots(
        part, [(encode(h.image, fmt), fmt) for h in renders], (encode(strip.image, line_fmt), line_fmt), renders, strip
    )


def relevant(part: SimPart, rp: ResolvedProfile) -> tuple[bool, ...]:
    """Per indication of the part: at or above the profile's minimum length and contrast."""
    ins = rp.profile.inspection
    return part.relevant(ins.min_indication_length_mm, ins.min_indication_contrast)


def _head_relevance(shots: Shots, k: int, rp: ResolvedProfile) -> tuple[bool, ...]:
    ins = rp.profile.inspection
    return head_relevant(shots.part, shots.head_renders[k], ins.min_indication_length_mm, ins.min_indication_contrast)


def _strip_relevance(shots: Shots, rp: ResolvedProfile) -> tuple[bool, ...]:
    ins = rp.profile.inspection
    return strip_relevant(shots.part, shots.strip_render, ins.min_indication_length_mm, ins.min_indication_contrast)


def head_label(shots: Shots, k: int, rp: ResolvedProfile) -> bool | None:
    """The k-th head frame's label over the rows the daemon tiles: from the head's top, one
    head tile down (sim/truth.py: the contrast drawn in that view, seen clearly enough)."""
    render = shots.head_renders[k]
    top = render.part_box[1]
    return tile_label(
        render.paths, _head_relevance(shots, k, rp), 0, top, FRAME_SHAPE[1], rp.profile.preprocess.head_tile_px
    )


def strip_label(shots: Shots, rp: ResolvedProfile) -> bool | None:
    """The strip's label over what the daemon tiles: the shank, under-head face to its end,
    the whole revolution."""
    render = shots.strip_render
    rows, width = render.image.shape[:2]
    return tile_label(
        render.points, _strip_relevance(shots, rp), render.datum_px, 0, width - render.datum_px, rows, wrap_rows=rows
    )


def export_shots(out: Path, rp: ResolvedProfile, shots: Shots) -> Counter[str]:
    """Write one part in both layouts; what was written, counted by layout and label."""
    part, angles = shots.part, rp.profile.head_positions_deg
    relevance = relevant(part, rp)
    truth = "defect" if any(relevance) else "good"
    folder = out / PARTS / truth / part.part_id
    counts: Counter[str] = Counter({f"{PARTS}/{truth}": 1})
    if len(relevance) > sum(relevance):
        counts[f"{PARTS}/with_subthreshold"] += 1
    for k, (angle, frame) in enumerate(zip(angles, shots.heads, strict=True)):
        path = folder / head_file(angle)
        write_camera_image(path, *frame)
        label = head_label(shots, k, rp)
        sub = "left_out" if label is None else "defect" if label else "good"
        counts[f"head/{sub}"] += 1
        if label is not None:
            name = f"{part.part_id}_{Path(head_file(angle)).stem}.png"
            link_or_copy(path, out / "head" / sub / name)
            if label:
                render = shots.head_renders[k]
                mask = draw_mask(FRAME_SHAPE, render.paths, _head_relevance(shots, k, rp))
                write_mask(out / MASKS / "head" / name, mask)
    write_camera_image(folder / STRIP_FILE, *shots.strip)
    label = strip_label(shots, rp)
    sub = "left_out" if label is None else "defect" if label else "good"
    counts[f"shank/{sub}"] += 1
    if label is not None:
        link_or_copy(folder / STRIP_FILE, out / "shank" / sub / f"{part.part_id}_strip.png")
        if label:
            render = shots.strip_render
            mask = draw_mask(render.image.shape[:2], render.points, _strip_relevance(shots, rp))
            write_mask(out / MASKS / "shank" / f"{part.part_id}_strip.png", mask)
    record = {**part.to_json(), "relevant": list(relevance), "defective": truth == "defect"}
    (folder / "part.json").write_text(json.dumps(record, indent=1) + "\n")
    return counts


def sample_parts(
    rp: ResolvedProfile, seed: int, count: int, defect_rate: float, conditions: Conditions = DEFAULT
) -> Iterator[SimPart]:
    """Deterministic for a seed (and conditions); drawn against the profile's minimum indication."""
    rng = np.random.default_rng([seed, 1])
    ins = rp.profile.inspection
    for i in range(count):
        yield sample_part(
            rng,
            rp.profile.geometry,
            f"{rp.name}-{seed}-{i:05d}",
            bool(rng.random() < defect_rate),
            conditions=conditions,
            min_length_mm=ins.min_indication_length_mm,
            min_contrast=ins.min_indication_contrast,
        )


def export_parts(
    out: Path,
    profile_name: str,
    config: Path | None,
    parts: int,
    seed: int,
    defect_rate: float,
    *,
    conditions: Conditions = DEFAULT,  # the model card renders SEED and one-perturbation variants
) -> dict[str, int]:
    rp, _, _ = find_profile(profile_name, config, verify_model=False)  # renders need no model
    renderer = Renderer(seed)
    counts: Counter[str] = Counter()
    for part in sample_parts(rp, seed, parts, defect_rate, conditions):
        counts += export_shots(out, rp, shoot(renderer, rp, part))
    return dict(sorted(counts.items()))


def export(args: argparse.Namespace) -> dict[str, int]:
    profile = args.profile or "m8x40-hex"
    conditions = PRESETS[args.conditions] if getattr(args, "conditions", None) else DEFAULT
    return export_parts(
        args.export, profile, args.config, args.parts, args.seed, args.defect_rate, conditions=conditions
    )
