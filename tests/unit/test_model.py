"""The committed models on onnxruntime: FP32 vs INT8 agreement, sha256 refusal, quantize, bench."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from cellctl.cli import main as cli
from cellctl.config import file_sha256, resolve_profile
from cellctl.drivers import DriverInitError
from cellctl.inference import OnnxInferencer
from cellctl.sim.dataset import labelled_tiles
from cellctl.sim.export import export_parts, sample_parts, shoot
from cellctl.sim.scene import Renderer
from tests.conftest import PROFILES

MODELS = PROFILES / "models"


@pytest.fixture(scope="module")
def golden():
    """The tiles the daemon scores of 10 rendered parts (fixed seed: the renderer is
    deterministic), labelled from the drawn indications."""
    rp = resolve_profile(PROFILES / "m8x40-hex.yaml")
    renderer = Renderer(555)
    xs, ys = [], []
    for part in sample_parts(rp, 555, 10, 0.5):
        for lt in labelled_tiles(shoot(renderer, rp, part), rp):
            xs.append(lt.batch)
            ys += lt.labels
    return rp, np.concatenate(xs), ys


def _model(name: str) -> OnnxInferencer:
    path = MODELS / name
    return OnnxInferencer(path, file_sha256(path), threads=2)


def test_int8_agrees_with_fp32_on_golden_renders(golden):
    rp, batch, labels = golden
    (p32, d32), (p8, d8) = _model("student-fp32.onnx").infer(batch), _model("student-int8.onnx").infer(batch)
    assert np.isfinite(p8).all() and p8.shape == (len(batch),)
    # both guards find their own renders in distribution: at most a few views beyond the threshold
    for d, name in ((d32, "student-fp32.onnx"), (d8, "student-int8.onnx")):
        assert d is not None and np.mean(d > _model(name).ood_threshold) <= 0.05
    threshold = rp.profile.decision.threshold
    agree = np.mean((p32 >= threshold) == (p8 >= threshold))
    assert agree >= 0.97, f"INT8 and FP32 decisions agree on only {agree:.1%} of views"
    assert float(np.mean(np.abs(p32 - p8))) < 0.05
    # and both see the indications: every clearly labelled defect view scores high with INT8
    called = p8 >= threshold
    truth = np.array([lab is True for lab in labels])
    assert truth.sum() >= 5 and called[truth].mean() >= 0.9


def test_model_with_another_sha256_is_refused():
    with pytest.raises(DriverInitError, match="does not match"):
        OnnxInferencer(MODELS / "student-int8.onnx", "0" * 64, threads=1)


def test_quantize_writes_a_working_int8_model(tmp_path, capsys):
    export_parts(tmp_path / "calib", "m8x40-hex", None, parts=2, seed=99, defect_rate=1.0)
    out = tmp_path / "int8.onnx"
    assert (
        cli(
            [
                "quantize",
                str(MODELS / "student-fp32.onnx"),
                str(out),
                "--calibration",
                str(tmp_path / "calib"),
                "--profile",
                "m8x40-hex",
                "--max-images",
                "6",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert file_sha256(out) in printed
    line = next(x for x in printed.splitlines() if x.startswith("INT8: "))
    assert "check views at threshold 0.5" in line and "decided otherwise" in line
    assert out.stat().st_size < (MODELS / "student-fp32.onnx").stat().st_size / 3  # int8 weights
    # a quantized student has no guard yet (`cellctl guard` adds it): the daemon refuses it
    with pytest.raises(DriverInitError, match="no out-of-distribution guard"):
        OnnxInferencer(out, file_sha256(out), threads=2)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (p,) = session.run(["defect_prob"], {"image": np.zeros((2, 3, 224, 224), np.float32)})
    assert p.shape == (2,) and np.isfinite(p).all()


def test_bench_compares_fp32_and_int8_on_the_same_inputs(capsys):
    assert cli(["bench", "--rounds", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    for name in ("fp32", "int8"):
        assert result[name]["per_view_batch1"]["p50_ms"] > 0
        assert result[name]["per_part_batch9"]["p50_ms"] > 0  # an M8 part: 4 head tiles, 5 strip tiles
    assert result["int8"]["bytes"] < result["fp32"]["bytes"] / 3
    assert result["int8_speedup_batch1"] > 0 and result["machine"]["cores"] >= 1
