"""TLSimu.cti, a GenTL producer with software trigger, for the camera driver tests.

The genicam wheels 1.4.0 and 1.5.0 ship it; 1.6 (installed, for harvesters) ships only viky,
which has no trigger. The producer needs only its own libVirtualFG.so, so the two files are
taken from the 1.5.0 wheel on PyPI into a cache folder, once per machine, by the test
session itself: `python3 -m pytest` stays the one test command. No network: the tests that
need it fail, loudly, rather than skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "genicam==1.5.0"
FILES = ("TLSimu.cti", "libVirtualFG.so")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "cellctl-tests" / "tlsimu-1.5.0"


def tlsimu_cti() -> Path:
    folder = cache_dir()
    cti = folder / FILES[0]
    if all((folder / f).is_file() for f in FILES):
        return cti
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux2014_x86_64", "-d", tmp, "-q"],
            check=True, timeout=300,
        )
        (wheel,) = Path(tmp).glob("genicam-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.rsplit("/", 1)[-1] in FILES:
                    (folder / name.rsplit("/", 1)[-1]).write_bytes(zf.read(name))
    return cti
