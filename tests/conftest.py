from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from pathlib import Path

import pytest
import structlog

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
    procs, paths = [], {}
    for name in ("scl_drive", "gardasoft"):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", f"cellctl.sim.{name}",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        procs.append(proc)
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.startswith(b"READY "), line
        paths[name] = line.split()[1].decode()
    yield paths
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
