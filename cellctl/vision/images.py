"""Saved camera images (the eval / calibration layouts) read back as the cameras deliver them.

A file that cannot be used raises ``UnreadableImage`` (an ``InvalidImage`` and an ``OSError``,
so every caller that handles either handles it) with one line naming the file and why: it is
no regular file (a folder, a FIFO, a device, a dangling or looping symbolic link), it cannot be
read, it is larger than any camera image, it is no PNG / TIFF / BMP, its header claims more
pixels than any camera delivers, it is truncated or corrupt, its pixels are not 8-bit, or it
has a number of planes no camera delivers. The bytes are checked before the decoder sees them
where that is cheap (the PNG chunks and their CRCs, the image size in a PNG, BMP or TIFF
header), so a truncated PNG or a header claiming 100000 x 100000 pixels is named as such
rather than as a decoder's complaint, and no decoder allocates for it. OpenCV's decoders are
bounded too: ``cellctl`` sets ``OPENCV_IO_MAX_IMAGE_PIXELS`` before OpenCV is loaded, and a
decoder's error is this module's one line.

OpenCV's own log lines are silenced (unless ``OPENCV_LOG_LEVEL`` asks for them): they would
repeat, in another form, what the one line says. libpng writes ``libpng error: ...`` to
stderr itself for data that passes the checks here but not its own (corrupt compressed data);
OpenCV gives no way to turn that off short of redirecting the process's stderr.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from cellctl import MAX_IMAGE_PIXELS
from cellctl.config import PartProfile
from cellctl.files import NotARegularFile, TooLarge, read_bounded
from cellctl.text import printable
from cellctl.vision.preprocess import InvalidImage

if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
# The largest file read as an image. The largest a camera here delivers, stored uncompressed
# (BMP or TIFF), is the frame camera's 2464 x 2056 RGB: 15.2 MB (the strip, 2048 lines of
# ~1000 px RGB, 6 MB); PNG stores less. 128 MiB is 8 times that: no camera image comes near
# it, and a file named as one that does (a disk image, a video, a device) is not read whole.
MAX_IMAGE_BYTES = 128 * 2**20
# the first bytes of each format written or read here
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP"}
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # every complete PNG ends with this chunk
# the bit depths each PNG colour type allows (grey, RGB, palette, grey + alpha, RGBA)
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


class UnreadableImage(InvalidImage, OSError):
    """A file that cannot be used as a camera image; its message is one line, file and why."""


def image_format(head: bytes) -> str | None:
    """ "PNG", "TIFF" or "BMP" by the file's first bytes; None for anything else."""
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def read_image(path: Path) -> np.ndarray:
    """The file's pixels as stored (rows x cols, or rows x cols x planes, BGR order), 8-bit."""
    name = printable(str(path))
    try:
        raw = read_bounded(path, MAX_IMAGE_BYTES)
    except TooLarge as exc:
        raise UnreadableImage(f"{name}: too large for a camera image ({exc})") from None
    except NotARegularFile as exc:
        raise UnreadableImage(f"{name}: {exc}") from None
    except OSError as exc:
        raise UnreadableImage(f"{name}: cannot read it: {exc.strerror or exc}") from None
    if not raw:
        raise UnreadableImage(f"{name}: empty file")
    fmt = image_format(raw[:8])
    if fmt is None:
        raise UnreadableImage(f"{name}: not an image (no PNG, TIFF or BMP header)")
    problem = _png_problem(raw) if fmt == "PNG" else None
    if problem is not None:
        raise UnreadableImage(f"{name}: {problem}")
    size = _header_size(raw, fmt)
    if size is not None:
        cols, rows = size
        if cols <= 0 or rows <= 0:
            raise UnreadableImage(f"{name}: {fmt} header says {cols} x {rows} pixels")
        if cols * rows > MAX_IMAGE_PIXELS:
            raise UnreadableImage(
                f"{name}: {fmt} header says {cols} x {rows} pixels, more than any camera image "
                f"(at most {MAX_IMAGE_PIXELS} read)"
            )
    try:
        data = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # the decoder's own limits (OPENCV_IO_MAX_IMAGE_PIXELS) and faults
        raise UnreadableImage(f"{name}: the {fmt} decoder refused it: {_cv_reason(exc)}") from None
    if data is None or data.size == 0:
        raise UnreadableImage(f"{name}: corrupt or truncated {fmt} data ({len(raw)} bytes)")
    if data.dtype != np.uint8:
        what = f"{data.dtype.itemsize * 8}-bit {'float ' if data.dtype.kind == 'f' else ''}pixels"
        raise UnreadableImage(f"{name}: {what}, expected 8-bit")
    if data.ndim == 3 and data.shape[2] not in (3, 4):
        raise UnreadableImage(f"{name}: {data.shape[2]} planes, expected 1 (mono or Bayer), 3 (RGB) or 4 (RGBA)")
    return data


def _png_problem(raw: bytes) -> str | None:
    """Why the PNG's chunks are not whole (lengths past the end, a bad CRC, no valid IHDR first,
    no image data, no IEND last), or None. Every chunk is walked (the CRCs of a 5 MP frame take
    a few ms): a file cut short with an end chunk glued on is named here, not by libpng."""
    if not raw.endswith(_PNG_END):
        return f"truncated PNG ({len(raw)} bytes, no end chunk)"
    at, first, idat = 8, True, False
    while at < len(raw):
        if at + 12 > len(raw):
            return f"truncated PNG ({len(raw)} bytes, a chunk header cut at byte {at})"
        length, kind = struct.unpack(">I4s", raw[at : at + 8])
        end = at + 12 + length
        if end > len(raw):
            return f"truncated PNG ({len(raw)} bytes, chunk {printable(kind.decode('latin-1'))} ends past it)"
        if first and (kind != b"IHDR" or length != 13):
            return "corrupt PNG (it does not start with its header chunk)"
        (crc,) = struct.unpack(">I", raw[end - 4 : end])
        if zlib.crc32(raw[at + 4 : end - 4]) != crc:
            return f"corrupt PNG (chunk {printable(kind.decode('latin-1'))} at byte {at} fails its CRC)"
        if first:
            depth, colour, compression, filtering, interlace = raw[at + 16 : at + 21]
            if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
                return f"corrupt PNG (header: bit depth {depth}, colour type {colour}, no valid combination)"
        idat = idat or kind == b"IDAT"
        if kind == b"IEND":
            if end != len(raw):
                return "corrupt PNG (data after the end chunk)"
            return None if idat else "corrupt PNG (no image data chunk)"
        at, first = end, False
    return f"truncated PNG ({len(raw)} bytes, no end chunk)"


def _header_size(raw: bytes, fmt: str) -> tuple[int, int] | None:
    """(columns, rows) the header claims, or None where it cannot be told cheaply (the decoder
    is bounded by OPENCV_IO_MAX_IMAGE_PIXELS then)."""
    try:
        if fmt == "PNG":  # IHDR, checked by _png_problem to be the first chunk
            cols, rows = struct.unpack(">II", raw[16:24])
            return cols, rows
        if fmt == "BMP":
            (header,) = struct.unpack("<I", raw[14:18])
            if header == 12:  # BITMAPCOREHEADER: unsigned 16-bit sizes
                cols, rows = struct.unpack("<HH", raw[18:22])
                return cols, rows
            cols, rows = struct.unpack("<ii", raw[18:26])
            return cols, abs(rows)  # a negative height is a top-down bitmap
        return _tiff_size(raw)
    except struct.error:  # too short for its header: the decoder names it
        return None


def _tiff_size(raw: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of the first image of a TIFF (the one decoded)."""
    order = "<" if raw[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", raw[4:8])
    (count,) = struct.unpack(order + "H", raw[ifd : ifd + 2])
    found: dict[int, int] = {}
    for k in range(count):
        tag, kind, _, value = struct.unpack(order + "HHI4s", raw[ifd + 2 + 12 * k : ifd + 14 + 12 * k])
        if tag in (256, 257) and kind in (3, 4):  # SHORT or LONG
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _cv_reason(exc: cv2.error) -> str:
    """OpenCV's message in one line, without its source file and line."""
    text = " ".join(str(exc).split())
    if "CV_IO_MAX_IMAGE_PIXELS" in text:
        return f"more pixels than any camera image (at most {MAX_IMAGE_PIXELS} read)"
    return text.split(") ", 1)[-1] if "error: (" in text else text


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
    """Everything directly in ``folder`` named as an image (by suffix), sorted; [] if it is no
    folder. Whatever it is: a folder, a FIFO, a dangling or looping symbolic link named
    ``x.png`` is listed too, and ``read_image`` says why it cannot be used; it is never
    silently left out."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def labelled_images(root: Path) -> list[tuple[Path, str, bool]]:
    """(path, kind, defective) for DIR/{head,shank}/{good,defect}/*, sorted."""
    return [
        (p, kind, label == "defect")
        for kind in ("head", "shank")
        for label in ("good", "defect")
        for p in image_files(root / kind / label)
    ]
