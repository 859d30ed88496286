"""The trivial rule a simulator must defeat: "defect if the brightest green pixel in the part
is above a threshold" (issue 8).

On seed renders it separates good from defective head views almost perfectly (indications
were drawn 130-200 grey levels bright, nothing else came near), so a model scoring 100 %
there proved nothing. On plant renders faint indications, edge build-up, bright deposits
and glare overlap: the best single threshold still errs often. The model card shows this
rule beside the model (``labelled_head_views`` + ``best_threshold``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cellctl.config import SimGeometry
from cellctl.sim.conditions import DEFAULT, Conditions
from cellctl.sim.part import SimPart, sample_indication, sample_part, with_indications
from cellctl.sim.scene import FRAME_PX_PER_MM, HeadRender, Renderer
from cellctl.sim.sensor import encode
from cellctl.sim.truth import head_frame_label

MARGIN_MM = 1.0  # round the part's silhouette: an indication at the edge is inside the region


def max_green_rule(image_region: np.ndarray, pixel_format: str | None = None) -> float:
    """The largest green value in a region of delivered pixels.

    RGB8 (rows x cols x 3): channel 1. BayerRG8: the G sites, the region cut at an even row
    and column (RGGB phase kept). A 2-D array without a format: one green / intensity plane.
    """
    if image_region.ndim == 3:
        return float(image_region[..., 1].max())
    if pixel_format == "BayerRG8":
        return float(max(image_region[0::2, 1::2].max(), image_region[1::2, 0::2].max()))
    return float(image_region.max())


def part_region(render: HeadRender, margin_mm: float = MARGIN_MM) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the part's silhouette plus a margin, even-aligned (Bayer phase)."""
    x0, y0, x1, y1 = render.part_box
    m = round(margin_mm * FRAME_PX_PER_MM)
    rows, cols = render.image.shape
    return max(x0 - m, 0) & ~1, max(y0 - m, 0) & ~1, min(x1 + m, cols), min(y1 + m, rows)


@dataclass(frozen=True)
class RuleScore:
    threshold: float  # "defect" when the rule's value >= threshold
    defective: int
    good: int
    escapes: int  # defective judged good
    false_rejects: int  # good judged defective

    @property
    def errors(self) -> int:
        return self.escapes + self.false_rejects

    @property
    def accuracy(self) -> float:
        return 1.0 - self.errors / max(self.defective + self.good, 1)


def score_threshold(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> RuleScore:
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    called = s >= threshold
    return RuleScore(
        float(threshold), int(y.sum()), int((~y).sum()), int((y & ~called).sum()), int((~y & called).sum())
    )


def best_threshold(scores: Sequence[float], labels: Sequence[bool]) -> RuleScore:
    """The single threshold with fewest errors on this labelled set (ties: fewer escapes, since
    an escape ships a cracked bolt) - the rule at its very best, fitted on its own test set."""
    candidates = sorted({float(v) for v in scores}) + [float("inf")]
    results = [score_threshold(scores, labels, t) for t in candidates]
    return min(results, key=lambda r: (r.errors, r.escapes))


def labelled_head_views(
    renderer: Renderer,
    geometry: SimGeometry,
    rng: np.random.Generator,
    per_class: int,
    *,
    conditions: Conditions = DEFAULT,
    angles: Sequence[float] = (0.0, 90.0, 180.0, 270.0),
    min_length_mm: float = 1.0,
    min_contrast: float = 30.0,
) -> list[tuple[SimPart, HeadRender, bool]]:
    """A balanced set of head frames: ``per_class`` showing one relevant head indication (drawn
    from the conditions, facing the camera within 40 deg) and ``per_class`` good ones (clean,
    or with nothing but non-relevant content: a frame showing a sub-threshold indication is
    ambiguous and skipped)."""
    out: list[tuple[SimPart, HeadRender, bool]] = []

    def good_part(name: str) -> SimPart:
        return sample_part(
            rng, geometry, name, False, conditions=conditions, min_length_mm=min_length_mm, min_contrast=min_contrast
        )

    while sum(1 for *_, y in out if y) < per_class:
        angle = float(rng.choice(angles))
        part = good_part(f"bd{len(out)}")
        crack = sample_indication(
            rng,
            geometry,
            conditions,
            min_length_mm=min_length_mm,
            min_contrast=min_contrast,
            region="head",
            azimuth_deg=angle + float(rng.uniform(-40.0, 40.0)),
        )
        assert crack is not None
        part = with_indications(part, (crack,))
        view = renderer.head_view(part, angle)
        if head_frame_label(part, view):
            out.append((part, view, True))
    good = 0
    while good < per_class:
        part = good_part(f"bg{good}")
        view = renderer.head_view(part, float(rng.choice(angles)))
        if head_frame_label(part, view) is False:
            out.append((part, view, False))
            good += 1
    return out


def rule_scores(views: Sequence[tuple[SimPart, HeadRender, bool]], pixel_format: str = "BayerRG8") -> list[float]:
    """The rule on each frame as the camera delivers it, over the part's region."""
    scores = []
    for _, view, _ in views:
        x0, y0, x1, y1 = part_region(view)
        data = encode(view.image, pixel_format)
        scores.append(max_green_rule(data[y0:y1, x0:x1], pixel_format))
    return scores
