"""What an image file named in the eval / calibration / training layouts can be, and what the
reader makes of it: every file that cannot be used is one line (file and why), never a
traceback, never a hang, never gigabytes decoded; `cellctl eval` counts each as RECHECK and
the run goes on. Real files (crafted headers, FIFOs, symbolic links) and real commands."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellctl import MAX_IMAGE_PIXELS
from cellctl.config import resolve_profile
from cellctl.files import read_bounded
from cellctl.train.bags import _item_tiles
from cellctl.train.items import Item
from cellctl.vision import InvalidImage
from cellctl.vision.images import MAX_IMAGE_BYTES, UnreadableImage, image_files, read_image
from tests.conftest import PROFILES

PROFILE = "m8x40-hex"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(cols: int, rows: int, colour: int = 0, depth: int = 8) -> bytes:
    """A complete, well-formed PNG whose header claims cols x rows and whose data is empty."""
    ihdr = struct.pack(">IIBBBBB", cols, rows, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def bmp_header_only(cols: int, rows: int) -> bytes:
    palette = b"\0\0\0\0" * 256
    offset = 14 + 40 + len(palette)
    dib = struct.pack("<IiiHHIIiiII", 40, cols, rows, 1, 8, 0, 0, 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset, 0, 0, offset) + dib + palette


def tiff_header_only(cols: int, rows: int) -> bytes:
    tags = [(256, 4, 1, cols), (257, 4, 1, rows), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def _good_png(path: Path, shape: tuple[int, ...] = (64, 80)) -> Path:
    assert cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
    return path


def _refused(path: Path) -> str:
    with pytest.raises(UnreadableImage) as info:
        read_image(path)
    message = str(info.value)
    assert isinstance(info.value, InvalidImage) and isinstance(info.value, OSError)  # every caller's catch
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


def test_headers_claiming_more_pixels_than_any_camera_are_refused_before_decoding(tmp_path: Path) -> None:
    cases = {
        "bomb.png": png_header_only(100_000, 100_000),
        "under_opencv_default.png": png_header_only(32768, 32767),  # 1.07 GP: OpenCV's default lets it through
        "wide.png": png_header_only(2**31 - 1, 1),
        "bomb.bmp": bmp_header_only(100_000, 100_000),
        "topdown.bmp": bmp_header_only(100_000, -100_000),
        "bomb.tif": tiff_header_only(100_000, 100_000),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        started = time.monotonic()
        why = _refused(tmp_path / name)
        assert "header says" in why and f"more than any camera image (at most {MAX_IMAGE_PIXELS} read)" in why, why
        assert time.monotonic() - started < 1.0  # nothing decoded
    (tmp_path / "zero.png").write_bytes(png_header_only(0, 10))
    assert _refused(tmp_path / "zero.png") == "PNG header says 0 x 10 pixels"
    # a real frame of the sensor's size is read: the limits are far above any camera image
    frame = _good_png(tmp_path / "frame.png", (2056, 2464, 3))
    assert read_image(frame).shape == (2056, 2464, 3)
    assert MAX_IMAGE_PIXELS >= 10 * 2464 * 2056 and MAX_IMAGE_BYTES >= 8 * 2464 * 2056 * 3


def test_a_png_whose_chunks_are_not_whole_is_named_without_the_decoder(tmp_path: Path) -> None:
    raw = _good_png(tmp_path / "good.png").read_bytes()
    (tmp_path / "cut_end_glued.png").write_bytes(raw[: len(raw) // 2] + raw[-12:])
    assert _refused(tmp_path / "cut_end_glued.png").startswith("truncated PNG")
    bad_crc = bytearray(raw)
    bad_crc[45] ^= 0xFF  # inside the first IDAT's data
    (tmp_path / "bad_crc.png").write_bytes(bytes(bad_crc))
    assert "fails its CRC" in _refused(tmp_path / "bad_crc.png")
    (tmp_path / "bad_colour.png").write_bytes(png_header_only(10, 10, colour=5))
    assert _refused(tmp_path / "bad_colour.png").startswith("corrupt PNG (header: bit depth 8, colour type 5")
    no_data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 10, 8, 0, 0, 0, 0))
    (tmp_path / "no_data.png").write_bytes(no_data + _chunk(b"IEND", b""))
    assert _refused(tmp_path / "no_data.png") == "corrupt PNG (no image data chunk)"


def test_only_regular_files_are_read_and_at_most_the_byte_limit(tmp_path: Path) -> None:
    folder = tmp_path / "head" / "good"
    folder.mkdir(parents=True)
    good = _good_png(folder / "a_good.png")
    os.mkfifo(folder / "fifo.png")  # opened for reading, it would block for ever
    (folder / "dev.png").symlink_to("/dev/zero")  # read whole, it would never end
    (folder / "dir.png").mkdir()
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "link.png").symlink_to(good)  # a link to a real image is read
    with (folder / "huge.tif").open("wb") as f:  # sparse: no disk used
        f.write(b"II*\x00")
        f.truncate(MAX_IMAGE_BYTES + 1)
    assert [p.name for p in image_files(folder)] == [
        "a_good.png", "dangling.png", "dev.png", "dir.png", "fifo.png", "huge.tif", "link.png", "loop.png"
    ]  # fmt: skip
    assert read_image(folder / "link.png").shape == (64, 80)
    assert _refused(folder / "fifo.png") == "not a regular file: a FIFO"
    assert _refused(folder / "dev.png") == "not a regular file: a character device"
    assert _refused(folder / "dir.png") == "not a regular file: a folder"
    assert _refused(folder / "dangling.png") == "a symbolic link to a missing file"
    assert _refused(folder / "loop.png") == "cannot read it: Too many levels of symbolic links"
    why = _refused(folder / "huge.tif")
    assert why == f"too large for a camera image ({MAX_IMAGE_BYTES + 1} bytes, more than the {MAX_IMAGE_BYTES} read)"
    with pytest.raises(OSError, match="more than the 10 read"):
        read_bounded(good, 10)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def test_opencv_decodes_nothing_over_the_limit_once_cellctl_is_loaded_and_its_errors_are_one_line(
    tmp_path: Path,
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(10_000, 10_000))  # 1e8 pixels: under OpenCV's default 2**30
    decode = (
        "import numpy, cv2\n"
        f"raw = numpy.frombuffer(open({str(bomb)!r}, 'rb').read(), numpy.uint8)\n"
        "try:\n    cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)\n    print('decoded')\n"
        "except cv2.error as exc:\n    print('refused', 'CV_IO_MAX_IMAGE_PIXELS' in str(exc))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    run = subprocess.run([sys.executable, "-c", "import cellctl\n" + decode], capture_output=True, text=True, env=env)
    assert run.stdout.strip() == "refused True", run  # OpenCV honours the limit cellctl sets
    # when OpenCV refuses a file itself (here: loaded before cellctl, with a lower limit), the
    # reader says so in one line, and OpenCV's own log line is not printed beside it
    small = _good_png(tmp_path / "small.png", (20, 20))
    read = (
        "import cv2\nfrom pathlib import Path\nfrom cellctl.vision.images import read_image, UnreadableImage\n"
        f"try:\n    read_image(Path({str(small)!r}))\nexcept UnreadableImage as exc:\n    print(exc)\n"
    )
    run = _python(read, OPENCV_IO_MAX_IMAGE_PIXELS="100")
    assert run.returncode == 0 and run.stderr == "", run
    assert run.stdout == f"{small}: the PNG decoder refused it: more pixels than any camera image " + (
        f"(at most {MAX_IMAGE_PIXELS} read)\n"
    )


def test_eval_counts_and_names_every_file_it_cannot_use_and_escapes_names(tmp_path: Path) -> None:
    folder = tmp_path / "head" / "good"
    folder.mkdir(parents=True)
    (folder / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (folder / "under_opencv_default.png").write_bytes(png_header_only(32768, 32767))
    (folder / "bomb.bmp").write_bytes(bmp_header_only(100_000, 100_000))
    (folder / "bomb.tif").write_bytes(tiff_header_only(100_000, 100_000))
    os.mkfifo(folder / "fifo.png")
    (folder / "dev.png").symlink_to("/dev/zero")
    (folder / "dir.png").mkdir()
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "x.png\nPASS  forged.png").write_bytes(b"not an image")
    entries = len(list(folder.iterdir()))
    run = subprocess.run(
        ["cellctl", "eval", "--profile", PROFILE, str(tmp_path), "--json"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and "Traceback" not in run.stderr, run
    report = json.loads(run.stdout, parse_constant=lambda c: pytest.fail(f"{c} in --json"))
    assert report["total"]["n"] == entries == len(report["unreadable"]) == report["total"]["rechecks"]
    whys = {line.split(": ", 1)[0].removeprefix("head/good/"): line.split(": ", 1)[1] for line in report["unreadable"]}
    assert whys["fifo.png"] == "not a regular file: a FIFO" and whys["dir.png"] == "not a regular file: a folder"
    assert whys["loop.png"].startswith("cannot read it") and whys["dangling.png"].startswith("a symbolic link")
    assert all("header says 100000 x 100000" in whys[n] for n in ("bomb.png", "bomb.bmp", "bomb.tif"))
    table = subprocess.run(
        ["cellctl", "eval", "--profile", PROFILE, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert table.returncode == 0 and "Traceback" not in table.stderr, table
    assert not any(line.startswith("PASS") for line in table.stdout.splitlines())  # no forged line
    assert "head/good/x.png\\nPASS  forged.png: not an image" in table.stdout
    assert "[ERROR" not in table.stderr and "libpng" not in table.stderr, table.stderr


def test_guard_fit_names_an_image_over_the_pixel_limit_in_one_line(tmp_path: Path) -> None:
    fit = tmp_path / "fit" / "head" / "good"
    fit.mkdir(parents=True)
    (fit / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    run = subprocess.run(
        ["cellctl", "guard", str(PROFILES / "models" / "student-int8.onnx"), str(tmp_path / "out.onnx")]
        + ["--fit", str(tmp_path / "fit"), "--holdout", str(tmp_path / "fit"), "--profile", PROFILE],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run
    assert f"{fit / 'bomb.png'}: PNG header says 100000 x 100000 pixels" in run.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_training_leaves_an_unreadable_image_out_and_names_it() -> None:
    rp = resolve_profile(PROFILES / f"{PROFILE}.yaml", verify_model=False)
    for path in (Path("/dev/zero"), Path("/nonexistent/x.png")):
        item = Item(rp.name, ((path, "head"),), False, "k", f"head/good/{path.name}", (None,))
        tiles, why = _item_tiles((item, rp))
        assert tiles is None and why is not None and why.startswith(f"head/good/{path.name}: {path}: ")
