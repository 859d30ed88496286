from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "profiles"


@pytest.fixture(autouse=True)
async def fail_on_leaked_tasks():
    """A component that leaves tasks running after close() leaks them in the daemon too."""
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in leaked:
        task.cancel()
    assert not leaked, f"tasks left running: {[t.get_name() for t in leaked]}"


@pytest.fixture
def profiles_copy(tmp_path: Path) -> Path:
    """The shipped profiles and models in a scratch folder that a test may edit."""
    dest = tmp_path / "profiles"
    shutil.copytree(PROFILES, dest, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    return dest
