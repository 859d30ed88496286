"""TLSimu.cti, a GenTL producer with software trigger, for the camera driver tests.

The genicam wheels 1.4.0 and 1.5.0 ship it; 1.6 (installed, for harvesters) ships only viky,
which has no trigger. The producer needs only its own libVirtualFG.so, so the setup step takes
the two files from the 1.5.0 wheel on PyPI into a cache folder, once per machine:

    python3 -m tests.data.tlsimu      # part of the README's setup command and of .ci/run

The test run itself never downloads anything: without the files, the tests that need them
fail (not skip) with an error that names this command.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "genicam==1.5.0"
FILES = ("TLSimu.cti", "libVirtualFG.so")
SETUP_COMMAND = "python3 -m tests.data.tlsimu"


class TLSimuMissing(RuntimeError):
    pass


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "cellctl-tests" / "tlsimu-1.5.0"


def tlsimu_cti() -> Path:
    """The installed TLSimu.cti; raises TLSimuMissing (naming the setup command) without it."""
    folder = cache_dir()
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise TLSimuMissing(
            f"the GenTL producer for the camera tests is not installed ({', '.join(missing)} "
            f"missing in {folder}); run the setup step: {SETUP_COMMAND}"
        )
    return folder / FILES[0]


def install() -> Path:
    """Download the genicam 1.5.0 wheel with pip and extract the two files; idempotent."""
    folder = cache_dir()
    if all((folder / f).is_file() for f in FILES):
        return folder / FILES[0]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # the wheel of the project's Python for this machine; the files inside are not
        # Python-specific, so this works from any interpreter version
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                WHEEL,
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                f"manylinux2014_{platform.machine()}",
                "-d",
                tmp,
                "-q",
            ],
            check=True,
            timeout=300,
        )
        (wheel,) = Path(tmp).glob("genicam-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            members = {name.rsplit("/", 1)[-1]: name for name in zf.namelist()}
            for f in FILES:
                if f not in members:
                    raise TLSimuMissing(f"{wheel.name} has no {f}")
                # write then rename: an interrupted setup leaves no half-written producer
                part = folder / f"{f}.part"
                part.write_bytes(zf.read(members[f]))
                part.replace(folder / f)
    return tlsimu_cti()


def main() -> int:
    try:
        cti = install()
    except (subprocess.SubprocessError, OSError, TLSimuMissing, ValueError) as exc:
        print(f"error: installing TLSimu from {WHEEL}: {exc}", file=sys.stderr)
        return 1
    print(f"TLSimu GenTL producer: {cti}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
