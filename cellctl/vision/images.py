"""Saved camera images (the eval / calibration layouts) read back as the cameras deliver them.

A file that cannot be used raises ``InvalidImage`` with one line naming the file and why: it
cannot be read, it is no PNG / TIFF / BMP, it is truncated or corrupt, its pixels are not
8-bit, or it has a number of planes no camera delivers. The bytes are checked before the
decoder sees them where that is cheap (the PNG end chunk), so a truncated PNG is named as
such rather than as a decoder's complaint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from cellctl.config import PartProfile
from cellctl.vision.preprocess import InvalidImage

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
# the first bytes of each format written or read here
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP"}
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # every complete PNG ends with this chunk


def image_format(head: bytes) -> str | None:
    """ "PNG", "TIFF" or "BMP" by the file's first bytes; None for anything else."""
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def read_image(path: Path) -> np.ndarray:
    """The file's pixels as stored (rows x cols, or rows x cols x planes, BGR order), 8-bit."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidImage(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if not raw:
        raise InvalidImage(f"{path}: empty file")
    fmt = image_format(raw[:8])
    if fmt is None:
        raise InvalidImage(f"{path}: not an image (no PNG, TIFF or BMP header)")
    if fmt == "PNG" and not raw.endswith(_PNG_END):
        raise InvalidImage(f"{path}: truncated PNG ({len(raw)} bytes, no end chunk)")
    data = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None or data.size == 0:
        raise InvalidImage(f"{path}: corrupt or truncated {fmt} data ({len(raw)} bytes)")
    if data.dtype != np.uint8:
        what = f"{data.dtype.itemsize * 8}-bit {'float ' if data.dtype.kind == 'f' else ''}pixels"
        raise InvalidImage(f"{path}: {what}, expected 8-bit")
    if data.ndim == 3 and data.shape[2] not in (3, 4):
        raise InvalidImage(f"{path}: {data.shape[2]} planes, expected 1 (mono or Bayer), 3 (RGB) or 4 (RGBA)")
    return data


def read_camera_image(path: Path, kind: str, profile: PartProfile) -> tuple[np.ndarray, str]:
    """Pixels and their format: one plane is the camera's single-plane format (BayerRG8 for
    a Bayer frame camera, else Mono8); three planes are RGB8 (files store BGR)."""
    data = read_image(path)
    if data.ndim == 2:
        fmt = profile.frame_camera.pixel_format if kind == "head" else profile.line_scan.pixel_format
        return data, fmt if fmt in ("BayerRG8", "Mono8") else "Mono8"
    return cv2.cvtColor(np.ascontiguousarray(data[..., :3]), cv2.COLOR_BGR2RGB), "RGB8"


def write_camera_image(path: Path, data: np.ndarray, pixel_format: str) -> None:
    """Lossless (PNG): what is read back is what the camera delivered, pixel for pixel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.cvtColor(data, cv2.COLOR_RGB2BGR) if pixel_format == "RGB8" else data
    if not cv2.imwrite(str(path), out, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"cannot write {path}")


def link_or_copy(source: Path, dest: Path) -> None:
    """``dest`` as a hard link to ``source`` (no second copy of a 5 MP frame), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:  # a file system without hard links, or another one
        shutil.copyfile(source, dest)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), sorted; [] if it is no folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def labelled_images(root: Path) -> list[tuple[Path, str, bool]]:
    """(path, kind, defective) for DIR/{head,shank}/{good,defect}/*, sorted."""
    return [
        (p, kind, label == "defect")
        for kind in ("head", "shank")
        for label in ("good", "defect")
        for p in image_files(root / kind / label)
    ]
