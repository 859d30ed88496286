"""The capture store on disk: one folder per kept part, within a byte budget, oldest first out.

    <dir>/20261206T204233.512Z-0000000042-P42/
        head0.png head90.png head180.png head270.png strip.png   (the parts layout of cellctl eval)
        capture.json                                             (why kept, the cell's scores and verdict)

A folder name starts with the UTC time it was captured, so names sort oldest first and the
budget drops from the front. A capture is written into ``.partial-<name>`` and renamed when
whole: a crash leaves a partial folder, removed at the next open, never a half capture that
export would hand to a quality engineer. Lossless PNG: an exported image gives ``cellctl eval``
the pixels the daemon judged.

Blocking (PNG encoding, file I/O): the daemon calls ``put`` on its capture thread, never on
the event loop. Captures are learning material, not the record of a verdict (that is the
records database): a capture the disk refuses is counted and logged, the part is not touched.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cellctl.vision.images import write_camera_image

RECORD = "capture.json"
PARTIAL = ".partial-"
STAMP = "%Y%m%dT%H%M%S.%f"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Capture:
    seq: int
    part_id: str
    captured: datetime  # aware, UTC
    record: Mapping[str, Any]  # capture.json, besides what the store adds
    images: Mapping[str, tuple[np.ndarray, str]] = field(default_factory=dict)  # file -> (pixels, format)

    @property
    def name(self) -> str:
        """Sorts by capture time; readable in a file manager (``..Z-<seq>-<part_id>``)."""
        stamp = self.captured.astimezone(UTC).strftime(STAMP)[:-3]
        return f"{stamp}Z-{self.seq:010d}-{_UNSAFE.sub('_', self.part_id)[:64]}"


def captured_at(name: str) -> datetime | None:
    """The capture time a folder name starts with; None for a name the store did not make."""
    try:
        return datetime.strptime(name.partition("Z-")[0] + "000", STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def captures(root: Path) -> Iterator[Path]:
    """The whole captures in ``root``, oldest first."""
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if path.is_dir() and captured_at(path.name) is not None and (path / RECORD).is_file():
            yield path


class CaptureStore:
    def __init__(self, root: Path, budget_bytes: int) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
        self._sizes: deque[tuple[Path, int]] = deque()  # oldest first
        self._bytes = 0
        self._lock = threading.Lock()  # put() on the capture thread, health() from anywhere
        self.counts = {"kept": 0, "dropped_for_budget": 0, "failed": 0}

    def open(self) -> None:
        """Create the folder, remove what a crash left half written, take stock of the rest."""
        self.root.mkdir(parents=True, exist_ok=True)
        for path in self.root.glob(f"{PARTIAL}*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in captures(self.root):
            self._sizes.append((path, folder_bytes(path)))
        self._bytes = sum(size for _, size in self._sizes)
        self._trim()

    def put(self, capture: Capture) -> Path:
        """Write ``capture`` whole, then drop the oldest until the store is within budget (the
        new one too, if it alone is over). OSError if it cannot be written whole."""
        final = self.root / capture.name
        partial = self.root / f"{PARTIAL}{capture.name}"
        try:
            partial.mkdir(parents=True)
            for file, (data, pixel_format) in capture.images.items():
                write_camera_image(partial / file, data, pixel_format)
            record = {**capture.record, "captured_utc": capture.captured.astimezone(UTC).isoformat()}
            (partial / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            partial.rename(final)
        except Exception as exc:  # the disk, or an image the encoder refuses: no half capture stays
            shutil.rmtree(partial, ignore_errors=True)
            with self._lock:
                self.counts["failed"] += 1
            raise OSError(f"cannot write capture {capture.name}: {exc}") from exc
        with self._lock:
            size = folder_bytes(final)
            self._sizes.append((final, size))
            self._bytes += size
            self.counts["kept"] += 1
            self._trim()
        return final

    def _trim(self) -> None:
        while self._bytes > self.budget_bytes and self._sizes:
            path, size = self._sizes.popleft()
            shutil.rmtree(path, ignore_errors=True)
            self._bytes -= size
            self.counts["dropped_for_budget"] += 1

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "captures": len(self._sizes),
                "bytes": self._bytes,
                "budget_bytes": self.budget_bytes,
                **self.counts,
            }


def folder_bytes(folder: Path) -> int:
    """The bytes of the files of one capture folder."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
