"""Layering: drivers/ never imports the daemon core, and nothing but sim/ imports the simulator
statically (the daemon reaches sim backends only through the URL registries)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def _imports(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in (REPO / folder).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def test_drivers_import_no_daemon_core_and_no_simulator():
    for path, names in _imports("drivers").items():
        bad = {n for n in names if n.startswith("cellctl.") and not n.startswith("cellctl.drivers")}
        assert not bad, f"{path} imports {bad}"


def test_daemon_core_never_imports_the_simulator():
    for path, names in _imports("cellctl").items():
        bad = {n for n in names if n.startswith(("cellctl.sim", "sim.", "tests"))}
        assert not bad, f"{path} imports {bad}"


def test_no_generic_top_level_package_is_installed():
    text = (REPO / "pyproject.toml").read_text()
    assert '"cellctl.drivers" = "drivers"' in text and '"cellctl.sim" = "sim"' in text
    import cellctl.drivers
    import cellctl.sim

    assert Path(cellctl.drivers.__file__).parent.name == "drivers"
    assert Path(cellctl.sim.__file__).parent.name == "sim"
