from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import structlog

from tests.emulator_process import emulator_process

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


@pytest.fixture(autouse=True)
def reset_logging():
    """Commands run in-process configure structlog globally; each test starts from defaults."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def profiles_copy(tmp_path: Path) -> Path:
    """The shipped profiles and models in a scratch folder that a test may edit."""
    dest = tmp_path / "profiles"
    shutil.copytree(PROFILES, dest, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    return dest


@pytest.fixture
async def emulators():
    """The SCL drive and Gardasoft emulators as their own processes, each on a pty."""
    async with emulator_process("scl_drive") as drive, emulator_process("gardasoft") as light:
        yield {"scl_drive": drive, "gardasoft": light}
