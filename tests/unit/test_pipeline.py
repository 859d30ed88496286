"""acquire -> analyse -> decide on the sim backends at time scale 0: no wall-clock budgets,
milliseconds of mechanics; the one model is the committed INT8 student."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cellctl.config import CellConfig, file_sha256, resolve_profile
from cellctl.devices import CellDevices
from cellctl.fault import Step
from cellctl.inference import OnnxInferencer
from cellctl.inspection import InvalidOutput, checked_outputs
from cellctl.link.protocol import Part
from cellctl.outcome import Outcome
from cellctl.pipeline import Acquisition, acquire, analyse, model_key
from cellctl.sim.part import sample_part
from cellctl.sim.world import WORLD_KEY, SimWorld
from tests.conftest import PROFILES

PROFILE = resolve_profile(PROFILES / "m8x40-hex.yaml")
CONFIG = CellConfig.model_validate(
    {"devices": {n: {"url": "sim://"} for n in ("frame_camera", "line_camera", "stage", "lighting")}}
)


@pytest.fixture(scope="module")
def model() -> OnnxInferencer:
    return OnnxInferencer(PROFILE.model_path, PROFILE.profile.model.sha256, 2)


@pytest.fixture
async def cell():
    world = SimWorld(seed=5, time_scale=0.0)
    devices = CellDevices.build(CONFIG, {WORLD_KEY: world})
    await devices.connect(5.0)
    await devices.start(CONFIG.timeouts)
    await devices.configure(PROFILE, 5.0)
    executor = ThreadPoolExecutor(max_workers=1)
    yield world, devices, executor
    await devices.close()
    executor.shutdown(wait=True)


def _place(world: SimWorld, part_id: str, defective: bool) -> None:
    rng = np.random.default_rng([5, int(part_id[1:])])
    world.fixture = sample_part(rng, PROFILE.profile.geometry, part_id, defective)


async def _inspect(cell, part_id="P1", defective=False, inferencer=None, model=None):
    _world, devices, executor = cell
    acq = Acquisition(Part(request_id=f"r-{part_id}", part_id=part_id), PROFILE.name, PROFILE, 1, 0.0, "boot-1")
    acq = await acquire(devices, acq, CONFIG.timeouts)
    return acq, await analyse(acq, {model_key(PROFILE): inferencer or model}, executor, 60.0)


class _Answer:
    """An inferencer that answers what a broken model or runtime would."""

    def __init__(self, answer):
        self.answer, self.path, self.sha256, self.ood_threshold = answer, Path("broken.onnx"), "0" * 64, 10.0

    def infer(self, batch):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(len(batch)), np.zeros(len(batch))


async def test_a_clean_part_is_acquired_whole_and_passes_and_the_light_is_off_after(cell, model):
    world = cell[0]
    _place(world, "P1", defective=False)
    acq, result = await _inspect(cell, model=model)
    assert acq.fault is None and len(acq.head_frames) == 4 and acq.strip is not None
    ids = [f.frame_id for f in acq.head_frames]
    assert ids == sorted(set(ids))  # four distinct shots, in turntable order
    assert world.light_gain == 0.0
    assert result.decision.outcome is Outcome.PASS, result.decision.reason
    # four head frames and the strip's tiles, each scored, the surface wholly covered
    assert {n for n in result.scores if n.startswith("head@")} == {"head@0", "head@90", "head@180", "head@270"}
    assert sum(n.startswith("shank[") for n in result.scores) >= 4
    assert result.evidence["coverage"] == {"head": 1.0, "shank": 1.0}
    assert result.model_sha256 == PROFILE.profile.model.sha256
    # what the verdict will carry: the request the part answered, the profile file judged under
    assert result.request_id == "r-P1" and result.profile_sha256 == file_sha256(PROFILE.path)


async def test_a_defective_part_is_rejected(cell, model):
    _place(cell[0], "P2", defective=True)
    _, result = await _inspect(cell, "P2", model=model)
    assert result.decision.outcome is Outcome.REJECT


async def test_each_head_shot_is_taken_at_its_own_angle(cell, model):
    """A crack seen from one side only is found: the head@180 view must be the 180 degree shot."""
    from cellctl.sim.part import Indication

    world = cell[0]
    _place(world, "P8", defective=False)
    crack = Indication(
        "crack",
        "head",
        azimuth_deg=191.0,
        z_mm=3.0,
        length_mm=3.0,
        angle_deg=90.0,
        width_px=3,
        contrast=190.0,
        jitter=(0.0,) * 6,
    )
    world.fixture = dataclasses.replace(world.fixture, indications=(crack,))
    _, result = await _inspect(cell, "P8", model=model)
    assert result.decision.outcome is Outcome.REJECT and result.scores["head@0"] < 0.5


@pytest.mark.parametrize(
    ("flag", "step"),
    [
        ("frame_timeouts", Step.FRAME),
        ("frame_disconnects", Step.TRIGGER),
        ("strip_timeouts", Step.STRIP),
    ],
)
async def test_a_lost_view_is_a_fault_of_its_step_and_recheck(cell, model, flag, step):
    world = cell[0]
    _place(world, "P3", defective=False)
    setattr(world.faults, flag, 1)
    acq, result = await _inspect(cell, "P3", model=model)
    assert acq.fault is not None and acq.fault.step is step
    assert result.decision.outcome is Outcome.RECHECK and result.decision.reason.startswith(f"{step.value}: ")
    assert world.light_gain == 0.0


async def test_an_incomplete_frame_is_recheck_not_scored(cell, model):
    world = cell[0]
    _place(world, "P4", defective=False)
    world.faults.incomplete_frames = 1
    _, result = await _inspect(cell, "P4", model=model)
    assert result.decision.outcome is Outcome.RECHECK and result.decision.reason.startswith("preprocess: incomplete")


async def test_an_empty_fixture_is_recheck(cell, model):
    cell[0].fixture = None
    _, result = await _inspect(cell, "P5", model=model)
    assert result.decision.outcome is Outcome.RECHECK and "no part seen" in result.decision.reason


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda n: np.full(n, np.nan, np.float32), "infer: non-finite model output"),
        (lambda n: np.full(n, 1.7, np.float32), "infer: model output 1.7..1.7 outside [0, 1]"),
        (lambda n: np.zeros(n + 1, np.float32), "infer: model output shape"),
        (lambda n: np.zeros(n, np.int64), "infer: model output of type int64"),
        (RuntimeError("onnxruntime: bad allocation"), "infer: onnxruntime: bad allocation"),
    ],
)
async def test_a_model_output_that_cannot_be_trusted_is_recheck(cell, answer, expected):
    _place(cell[0], "P6", defective=False)
    _, result = await _inspect(cell, "P6", inferencer=_Answer(answer))
    assert result.decision.outcome is Outcome.RECHECK and result.decision.reason.startswith(expected)
    assert result.scores == {}


async def test_inference_that_never_returns_is_recheck_after_its_deadline(cell):
    world, devices, executor = cell
    _place(world, "P7", defective=False)
    acq = Acquisition(Part(request_id="r-P7", part_id="P7"), PROFILE.name, PROFILE, 1, 0.0, "boot-1")
    acq = await acquire(devices, acq, CONFIG.timeouts)
    release = threading.Event()

    def stuck(n):
        release.wait(60)  # holds the inference thread until the test lets go
        return np.zeros(n, np.float32)

    result = await analyse(acq, {model_key(PROFILE): _Answer(stuck)}, executor, 0.01)
    release.set()
    assert result.decision.outcome is Outcome.RECHECK and result.decision.reason == "infer: no result within 0.01 s"


def test_checked_outputs_accepts_n_or_n_by_1_probabilities_only():
    probs, ood = checked_outputs((np.array([[0.1], [0.9]], np.float32), np.array([1.0, 2.0])), 2)
    assert probs.tolist() == pytest.approx([0.1, 0.9]) and ood is not None and ood.tolist() == [1.0, 2.0]
    with pytest.raises(InvalidOutput):
        checked_outputs((np.array([0.1, -0.2]), None), 2)
    with pytest.raises(InvalidOutput):
        checked_outputs(np.array([0.1, 0.2]), 2)  # no ood distances beside the probabilities


async def test_a_refused_profile_switch_raises_and_sets_the_previous_profile_up_again(cell):
    from cellctl.pipeline import Pipeline

    _, devices, executor = cell
    other = resolve_profile(PROFILES / "m12x80-hex.yaml")
    # the last device to be set up refuses, after the cameras and the stage took the new
    # profile: model_copy skips validation, as a limit the model does not know would
    beyond = other.profile.lighting.model_copy(update={"mode": "continuous", "intensity_pct": 150.0})
    camera = other.profile.frame_camera.model_copy(update={"exposure_us": 12000.0})
    refused = dataclasses.replace(
        other, profile=other.profile.model_copy(update={"lighting": beyond, "frame_camera": camera})
    )
    # only the profile switch is exercised: the parts of the line it does not touch are absent
    line = Pipeline(CONFIG, {}, {}, devices, None, None, None, None, executor, None)  # type: ignore[arg-type]
    await line.use_profile(PROFILE)
    with pytest.raises(Exception, match="100"):
        await line.use_profile(refused)
    assert line.current is PROFILE
    # the devices that had taken the new profile were set back (the sim keeps what it was given)
    assert devices.frame_camera._settings.exposure_us == PROFILE.profile.frame_camera.exposure_us == 8000.0
    assert devices.stage._settings == PROFILE.profile.motion != other.profile.motion
    await line.use_profile(other)
    assert line.current is other and devices.stage._settings == other.profile.motion
