"""Items -> bags of model inputs: every tile the daemon would score for the item's images,
located, tiled and prepared by the daemon's own code (``cellctl.ood.calibrate.views_of``:
one function for the guard, the quantizer and the trainer, never a copy).

Stored as uint8 (the camera's 8 bits; the prepared input is a float in [0, 1] that differs
from k/255 only by the resampling of a tile to the model's size, well under one grey level):
a quarter of the memory of float32, so a few thousand parts fit on this machine. An image the
daemon would not score whole (the part not located) gives its tiles that were laid, or none:
an item with no tile is left out and named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cellctl.config import ResolvedProfile
from cellctl.train.items import Item
from cellctl.train.masks import NEGATIVE, UNKNOWN, BadMask, read_mask, tile_labels
from cellctl.vision import InvalidImage


@dataclass(frozen=True)
class Bags:
    x: np.ndarray  # (N, 3, S, S) uint8: every tile of every bag
    start: np.ndarray  # (M,) first tile of each bag
    count: np.ndarray  # (M,) tiles of each bag
    label: np.ndarray  # (M,) float32 1 = defect
    tile_label: np.ndarray  # (N,) int8 per tile: masks.POSITIVE / NEGATIVE / UNKNOWN
    items: tuple[Item, ...]  # the item each bag came from
    left_out: tuple[str, ...]  # "<item>: why" of items without a tile

    def __len__(self) -> int:
        return len(self.items)

    def tiles(self, bag: int) -> np.ndarray:
        return self.x[self.start[bag] : self.start[bag] + self.count[bag]]

    def labels_of(self, bag: int) -> np.ndarray:
        return self.tile_label[self.start[bag] : self.start[bag] + self.count[bag]]

    def tile_index(self) -> np.ndarray:
        """The tiles of every bag, in order (indices into ``x``, which subsets share)."""
        if not len(self.count):
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(s, s + c) for s, c in zip(self.start, self.count, strict=True)])

    def subset(self, keep: Sequence[int]) -> Bags:
        """These bags only; the tiles stay where they are (no copy of ``x``)."""
        k = np.asarray(keep, np.int64)
        items = tuple(self.items[i] for i in k)
        return Bags(self.x, self.start[k], self.count[k], self.label[k], self.tile_label, items, ())

    def by_side(self, side_of: dict[str, str], side: str) -> Bags:
        return self.subset([b for b, item in enumerate(self.items) if side_of[item.part_key] == side])


Tiles = tuple[np.ndarray, np.ndarray]  # (n, 3, S, S) uint8 inputs, (n,) int8 tile labels


def _item_tiles(job: tuple[Item, ResolvedProfile]) -> tuple[Tiles | None, str | None]:
    from cellctl.inspection import model_inputs  # heavy; a worker process imports it once
    from cellctl.ood.calibrate import tiles_of

    item, rp = job
    batches, labels = [], []
    try:
        for k, (path, kind) in enumerate(item.files):
            frame, specs, _ = tiles_of(rp, path, kind)
            batches.append(model_inputs(frame, specs, rp))
            mask = item.masks[k] if k < len(item.masks) else None
            if not item.defect:  # every tile of a good image is a negative
                labels.append(np.full(len(specs), NEGATIVE, np.int8))
            elif mask is None:  # somewhere in the image: which tile is not known
                labels.append(np.full(len(specs), UNKNOWN, np.int8))
            else:
                labels.append(tile_labels(read_mask(mask, frame.data.shape), specs, min_length_px(rp, kind)))
    # read_image raises InvalidImage (an OSError too) for every file it cannot use; OpenCV's
    # own cv2.error can come from the mask reader (cv2.imread) on a header over its pixel limit
    except (InvalidImage, OSError, BadMask, cv2.error) as exc:
        return None, f"{item.name}: {' '.join(str(exc).split())}"
    tiles = np.concatenate(batches) if batches else np.zeros((0,), np.float32)
    if len(tiles) == 0:
        return None, f"{item.name}: no tile (the part was not located)"
    return (np.clip(np.rint(tiles * 255.0), 0, 255).astype(np.uint8), np.concatenate(labels)), None


def min_length_px(rp: ResolvedProfile, kind: str) -> float:
    """The profile's smallest relevant indication, in pixels of this kind's camera."""
    optics = rp.profile.optics
    scale = optics.frame_px_per_mm if kind == "head" else optics.line_px_per_mm
    return rp.profile.inspection.min_indication_length_mm * scale


def build_bags(items: Sequence[Item], profiles: dict[str, ResolvedProfile], workers: int = 2) -> Bags:
    """Every item's tiles, in ``workers`` processes, in the items' order."""
    jobs = [(i, profiles[i.profile]) for i in items]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_item_tiles, jobs, chunksize=8))
    else:
        results = [_item_tiles(j) for j in jobs]
    kept = [(i, t) for i, (t, _) in zip(items, results, strict=True) if t is not None]
    left_out = tuple(why for _, why in results if why is not None)
    counts = np.array([len(t[0]) for _, t in kept], np.int64)
    size = next(iter(profiles.values())).profile.preprocess.input_size_px
    x = np.concatenate([t[0] for _, t in kept]) if kept else np.zeros((0, 3, size, size), np.uint8)
    tile_label = np.concatenate([t[1] for _, t in kept]) if kept else np.zeros(0, np.int8)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if kept else counts
    label = np.array([float(i.defect) for i, _ in kept], np.float32)
    return Bags(x, start, counts, label, tile_label, tuple(i for i, _ in kept), left_out)


def items_key(items: Sequence[Item]) -> str:
    """What a cache of bags was built from: every item's profile, label and files, masks too
    (name, size, modification time): a relabelled or replaced image or mask is another set."""
    h = hashlib.sha256()
    for i in items:
        h.update(f"{i.profile}|{i.defect}|{i.part_key}".encode())
        files = list(i.files) + [(m, "mask") for m in i.masks if m is not None]
        for path, kind in files:
            st = path.stat() if path.exists() else None
            h.update(f"|{path}|{kind}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}".encode())
    return h.hexdigest()


def cached_bags(
    items: Sequence[Item], profiles: dict[str, ResolvedProfile], cache: Path, workers: int = 2
) -> tuple[Bags, bool]:
    """The bags from ``cache`` if it was built from these items, else built and saved there;
    and whether the cache was used (a resumed run tiles nothing again)."""
    key = items_key(items)
    try:
        with np.load(cache) as f:
            if str(f["key"]) == key:
                kept = [items[k] for k in f["kept"]]
                left = tuple(str(w) for w in f["left_out"])
                return Bags(f["x"], f["start"], f["count"], f["label"], f["tile_label"], tuple(kept), left), True
    except (OSError, ValueError, KeyError):
        pass
    bags = build_bags(items, profiles, workers)
    index = {id(i): k for k, i in enumerate(items)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.name + ".partial.npz")
    np.savez(
        partial,
        key=np.array(key),
        x=bags.x,
        start=bags.start,
        count=bags.count,
        label=bags.label,
        tile_label=bags.tile_label,
        kept=np.array([index[id(i)] for i in bags.items], np.int64),
        left_out=np.array(bags.left_out, dtype=str),
    )
    partial.replace(cache)
    return bags, False
