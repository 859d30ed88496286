"""What a student is trained on: labelled items found in folders of the ``cellctl eval`` layout.

An item is what carries one label: an image of ``DIR/{head,shank}/{good,defect}/`` (one head
frame or one strip), or a part folder of ``DIR/parts/{good,defect}/<part>/`` (its head frames
and strip together: "defect" says only that the part has a defect somewhere). The daemon
judges a view by its highest tile and a part by its highest view, so an item's label is the
label of its highest-scoring tile: training is multiple-instance learning over the item's
tiles (cellctl/train/fit.py), and the label is never pushed onto a tile it does not describe.
A defective image with a mask (``DIR/masks/``, cellctl/train/masks.py) labels its tiles too.

Every item names its part (``part_key``) so a split can keep a part on one side only: the
``<part>_head90.png`` / ``<part>_strip.png`` names of `cellctl sim --export` and
`cellctl captures export` give it; any other file name is a part of its own. Items of
``unlabelled/`` are not training material until a person sorts them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cellctl.evaluation import LABELS, PARTS, STRIP_FILE, head_file
from cellctl.train.masks import mask_path
from cellctl.vision.images import image_files

KINDS = ("head", "shank")
_VIEW_SUFFIX = re.compile(r"_(?:head-?\d+(?:\.\d+)?|strip)$")


@dataclass(frozen=True)
class Item:
    profile: str  # the profile whose geometry and scale tile it
    files: tuple[tuple[Path, str], ...]  # (image, "head" | "shank"), in the daemon's order
    defect: bool
    part_key: str  # the physical part: items of one part stay on one side of a split
    name: str  # for reports: the file or part folder relative to its DIR
    # per file: where its indications are (cellctl/train/masks.py), or None; only defective
    # images of the images layout have one
    masks: tuple[Path | None, ...] = ()

    @property
    def kind(self) -> str:
        """ "head", "shank" or "part" (several images)."""
        return self.files[0][1] if len(self.files) == 1 else "part"


def part_key(path: Path) -> str:
    """The part an image of the images layout shows: its name without ``_head<angle>`` or
    ``_strip``; a name without either is a part of its own."""
    return _VIEW_SUFFIX.sub("", path.stem)


def find_items(root: Path, profile: str, head_positions_deg: Sequence[float]) -> list[Item]:
    """The labelled items under ``root``, sorted: the images layout when it has any (its labels
    say what each image shows), else the parts layout (both are often two views of the same
    parts: `cellctl sim --export` writes both). Part keys are prefixed with the folder, so two
    folders never share a part by accident of naming."""
    items: list[Item] = []
    for kind in KINDS:
        for label in LABELS:
            for path in image_files(root / kind / label):
                key = f"{root}:{part_key(path)}"
                defect = label == "defect"
                mask = mask_path(root, kind, path)
                masks = (mask if defect and mask.is_file() else None,)
                items.append(Item(profile, ((path, kind),), defect, key, f"{kind}/{label}/{path.name}", masks))
    if items:
        return items
    for label in LABELS:
        folder = root / PARTS / label
        if not folder.is_dir():
            continue
        for part in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = tuple((part / head_file(a), "head") for a in head_positions_deg) + ((part / STRIP_FILE, "shank"),)
            items.append(Item(profile, files, label == "defect", f"{root}:{part.name}", f"{PARTS}/{label}/{part.name}"))
    return items
