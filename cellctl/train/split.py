"""Train / validation / held-out split by part, stratified by whether the part is defective.

A part's views are alike (one seating, one bath, one lamp): a part on both sides of a split
would let the held-out figures reward memory. So whole parts are dealt, defective and good
parts separately (each side gets its share of the rare class), in a seeded order: the same
items and seed give the same split, recorded in the model package (``split.json``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cellctl.train.items import Item

SIDES = ("train", "val", "heldout")


@dataclass(frozen=True)
class Split:
    fractions: tuple[float, float, float]
    seed: int
    side_of: dict[str, str]  # part key -> "train" | "val" | "heldout"

    def items(self, items: Sequence[Item], side: str) -> list[Item]:
        return [i for i in items if self.side_of[i.part_key] == side]

    def summary(self, items: Sequence[Item]) -> dict[str, dict[str, int]]:
        """Per side: parts, items, defective items."""
        out = {s: {"parts": 0, "items": 0, "defect_items": 0} for s in SIDES}
        for side in self.side_of.values():
            out[side]["parts"] += 1
        for i in items:
            out[self.side_of[i.part_key]]["items"] += 1
            out[self.side_of[i.part_key]]["defect_items"] += int(i.defect)
        return out


def split_by_part(items: Sequence[Item], fractions: tuple[float, float, float], seed: int) -> Split:
    """Deal whole parts to the sides; a part is defective if any of its items is. Each side
    with a non-zero fraction gets at least one part of each class while there are enough."""
    defective: dict[str, bool] = defaultdict(bool)
    for i in items:
        defective[i.part_key] |= i.defect
    rng = np.random.default_rng(seed)
    side_of: dict[str, str] = {}
    dealt = [0, 0, 0]  # parts per side so far, over both classes
    for cls in (True, False):
        keys = sorted(k for k, d in defective.items() if d is cls)
        keys = [keys[j] for j in rng.permutation(len(keys))]
        for key, side in zip(keys, _deal(len(keys), fractions, dealt), strict=True):
            side_of[key] = side
    return Split(fractions, seed, side_of)


def _deal(n: int, fractions: tuple[float, float, float], dealt: list[int]) -> list[str]:
    """``n`` sides in the given proportions (largest remainder; of equal remainders, the side
    furthest below its share of ``dealt`` first, so the classes' odd parts do not pile up on one
    side), a side with a share getting one before any side gets two. Adds to ``dealt``."""
    counts = [int(f * n) for f in fractions]

    def behind(k: int) -> tuple[float, float]:
        return (-(fractions[k] * n - counts[k]), dealt[k] - fractions[k] * sum(dealt))

    for k in sorted(range(3), key=behind)[: n - sum(counts)]:
        counts[k] += 1
    for k in range(3):  # a small class: every side that should have some gets one
        if fractions[k] > 0 and counts[k] == 0 and max(counts) > 1:
            counts[counts.index(max(counts))] -= 1
            counts[k] += 1
    for k in range(3):
        dealt[k] += counts[k]
    return [side for side, c in zip(SIDES, counts, strict=True) for _ in range(c)]
