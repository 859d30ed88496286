"""The wheel holds every module and data file of the tree, under the cellctl namespace only.

The expected contents are derived from the source folders (pyproject package-dir), not from the
package list, so a package or data file that pyproject forgets fails here. The build runs on a
copy of the tree: setuptools' build/ and egg-info caches in the work tree could hide a missing
file or carry a deleted one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

# data files the installed daemon reads (profiles, models, model card) and the robot-side EKI
# config example it ships; build logs stay out
DATA_GLOBS = {"profiles": ["*.yaml", "models/*.onnx", "models/*.json", "models/*.md"], "cellctl": ["bridge/*.xml"]}


def _package_dirs() -> dict[str, str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return mapping


def _source_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _expected() -> set[str]:
    """Wheel paths of every .py file and listed data file under the mapped folders."""
    expected = set()
    for name, folder in _package_dirs().items():
        src, dest = REPO / folder, name.replace(".", "/")
        for path in _source_files(src):
            if path.suffix == ".py":
                expected.add(f"{dest}/{path.relative_to(src).as_posix()}")
        for pattern in DATA_GLOBS.get(folder, []):
            expected |= {f"{dest}/{p.relative_to(src).as_posix()}" for p in src.glob(pattern)}
    return expected


def _expected_packages() -> set[str]:
    """Every folder with .py files under a mapped folder, by its installed dotted name."""
    packages = set()
    for name, folder in _package_dirs().items():
        src = REPO / folder
        for path in _source_files(src):
            if path.suffix == ".py":
                rel = path.parent.relative_to(src)
                packages.add(".".join([name, *rel.parts]))
    return packages


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in set(_package_dirs().values()):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # no isolation: setuptools>=77 comes with the dev extra, and the build needs no network
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = (tmp / "dist").glob("cellctl-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    missing = _expected_packages() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_every_module_and_data_file_is_in_the_wheel(wheel):
    names = set(wheel.namelist())
    expected = _expected()
    assert len(expected) > 50 and any(n.endswith(".onnx") for n in expected)
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"


def test_the_wheel_installs_nothing_outside_the_cellctl_namespace(wheel):
    tops = {n.split("/", 1)[0] for n in wheel.namelist()}
    assert tops == {"cellctl", "cellctl-0.1.0.dist-info"}, tops


def test_the_wheel_carries_the_entry_point_and_the_spdx_license(wheel):
    info = "cellctl-0.1.0.dist-info"
    assert "cellctl = cellctl.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()
    metadata = wheel.read(f"{info}/METADATA").decode()
    assert "License-Expression: LicenseRef-Proprietary" in metadata
    assert "Metadata-Version: 2.4" in metadata or "Metadata-Version: 2.5" in metadata


def test_the_installed_layout_maps_the_fixed_folders_under_cellctl():
    # the editable install: drivers/ and sim/ import as cellctl.drivers and cellctl.sim only
    import cellctl.drivers
    import cellctl.sim

    assert Path(cellctl.drivers.__file__).parent == REPO / "drivers"
    assert Path(cellctl.sim.__file__).parent == REPO / "sim"
