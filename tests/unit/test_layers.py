"""Layering, as import-linter checks it (pyproject [tool.importlinter], run by .ci/lint.py):
drivers/ never imports the daemon core or the simulator, the core never imports sim/ (it reaches
sim backends only through the registries' "module:Class" strings), nothing imports tests/, and
the fixed folders are imported as cellctl.drivers / cellctl.sim, never by their folder names.

The contracts hold on this tree, and each one breaks on a copy of it with one bad import added:
a contract that cannot fail would pass here too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT = REPO / ".ci" / "lint.py"


def _lint_imports(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LINT), "--repo", str(repo), "imports"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_import_contracts_hold_on_this_tree(tmp_path):
    # on a copy: the view the script builds in build/ is then not shared with a concurrent run
    copy = _copy_tree(tmp_path)
    done = _lint_imports(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 5 kept, 0 broken." in done.stdout


def test_each_contract_breaks_on_one_bad_import(tmp_path):
    copy = _copy_tree(tmp_path)
    (copy / "drivers" / "_probe.py").write_text("import cellctl.config\n")
    (copy / "cellctl" / "_probe.py").write_text("from cellctl.sim import world\n")
    (copy / "sim" / "_probe.py").write_text("import tests.conftest\n")
    (copy / "tests" / "_probe.py").write_text("from sim import scene\n")  # works from the repo root only
    (copy / "cellctl" / "pipeline" / "_probe.py").write_text("import torch\n")  # training only
    done = _lint_imports(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Contracts: 0 kept, 5 broken." in done.stdout
    for chain in (
        "cellctl.drivers._probe -> cellctl.config",
        "cellctl._probe -> cellctl.sim.world",
        "cellctl.sim._probe -> tests.conftest",
        "tests._probe -> sim",
        "cellctl.pipeline._probe -> torch",
    ):
        assert chain in done.stdout


def _copy_tree(tmp_path: Path) -> Path:
    """The sources import-linter reads (no models: 50 MB it does not look at)."""
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy2(REPO / "pyproject.toml", copy)
    skip = shutil.ignore_patterns("__pycache__", "*.onnx", "*.log")
    for folder in ("cellctl", "drivers", "sim", "profiles", "tests"):
        shutil.copytree(REPO / folder, copy / folder, ignore=skip)
    return copy
