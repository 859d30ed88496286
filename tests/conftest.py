from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import structlog

from cellctl.cli import main as cli
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


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model package from a tiny real `cellctl train` run: 16 PLANT parts rendered, a resnet10
    teacher, one epoch each (built once, for the tests that ask for it)."""
    root = tmp_path_factory.mktemp("factory")
    data = root / "renders"
    assert (
        cli(
            [
                "sim",
                "--export",
                str(data),
                "--parts",
                "16",
                "--seed",
                "5",
                "--defect-rate",
                "0.5",
                "--conditions",
                "plant",
            ]
        )
        == 0
    )
    out = root / "package"
    argv = ["train", str(out), "--profile", "m8x40-hex", "--data", str(data), "--epochs", "1", "--teachers", "resnet10"]
    argv += ["--teacher-epochs", "1", "--calibration-views", "20", "--false-alarm-rate", "0.2", "--threads", "1"]
    assert cli(argv) == 0
    return out


def passing_copy(package: Path, dest: Path) -> Path:
    """A copy of ``package`` whose card says its m8x40-hex held-out figures pass the gate (a real
    run that passes takes hours); its models and their sha256 stay the ones measured."""
    shutil.copytree(package, dest)
    card = json.loads((dest / "card.json").read_text())
    perfect = {"n": 40, "good": 20, "defective": 20, "escapes": 0, "false_rejects": 0, "rechecks": 0}
    card["heldout"]["int8"]["m8x40-hex"] = {"head": perfect}
    card["heldout_parts"]["int8"]["m8x40-hex"] = {"part": perfect | {"n": 15, "good": 5, "defective": 10}}
    card["int8_vs_fp32"].update(items_differing=0, views_differing=0)
    (dest / "card.json").write_text(json.dumps(card))
    return dest


def with_promotion(profile: Path, **limits: object) -> Path:
    """``profile`` with a ``promotion:`` block of these limits appended."""
    block = "promotion:\n" + "".join(f"  {k}: {v}\n" for k, v in limits.items())
    profile.write_text(profile.read_text() + block)
    return profile
