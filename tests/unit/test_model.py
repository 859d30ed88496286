"""The committed models on onnxruntime: FP32 vs INT8 agreement, sha256 refusal, eval and quantize."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellctl.cli import main as cli
from cellctl.config import file_sha256, resolve_profile
from cellctl.drivers import DriverInitError
from cellctl.inference import OnnxInferencer
from cellctl.sim.dataset import iter_parts
from cellctl.sim.export import export_parts
from cellctl.vision import prepare_batch
from tests.conftest import PROFILES

MODELS = PROFILES / "models"


@pytest.fixture(scope="module")
def golden():
    """Views of 10 rendered parts (fixed seed: the renderer is deterministic) with labels."""
    rp = resolve_profile(PROFILES / "m8x40-hex.yaml")
    xs, ys = [], []
    for r in iter_parts(rp, seed=555, count=10, defect_rate=0.5):
        xs.append(prepare_batch(r.head_frames, r.strip_frame, rp.views, rp.profile.preprocess).batch)
        ys += r.labels
    return rp, np.concatenate(xs), ys


def _model(name: str) -> OnnxInferencer:
    path = MODELS / name
    return OnnxInferencer(path, file_sha256(path), threads=2)


def test_int8_agrees_with_fp32_on_golden_renders(golden):
    rp, batch, labels = golden
    p32, p8 = _model("student-fp32.onnx").infer(batch), _model("student-int8.onnx").infer(batch)
    assert np.isfinite(p8).all() and p8.shape == (len(batch),)
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


def test_eval_reports_per_kind_and_total(tmp_path, capsys):
    counts = export_parts(tmp_path / "set", "m8x40-hex", None, parts=4, seed=77, defect_rate=0.5)
    assert cli(["eval", "--profile", "m8x40-hex", str(tmp_path / "set"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["head"]["n"] == counts.get("head/good", 0) + counts.get("head/defect", 0)
    assert report["shank"]["n"] == 4
    total = report["total"]
    assert total["n"] == report["head"]["n"] + 4
    c = total["confusion"]
    assert sum(c["good"].values()) + sum(c["defect"].values()) == total["n"]
    assert total["escapes"] == c["defect"]["good"] and total["false_rejects"] == c["good"]["defect"]
    assert total["accuracy"] >= 0.9


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
    assert file_sha256(out) in capsys.readouterr().out
    assert out.stat().st_size < (MODELS / "student-fp32.onnx").stat().st_size / 3  # int8 weights
    p = OnnxInferencer(out, file_sha256(out), threads=2).infer(np.zeros((2, 3, 224, 224), np.float32))
    assert p.shape == (2,) and np.isfinite(p).all()


def test_bench_compares_fp32_and_int8_on_the_same_inputs(capsys):
    assert cli(["bench", "--rounds", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    for name in ("fp32", "int8"):
        assert result[name]["per_view_batch1"]["p50_ms"] > 0
        assert result[name]["per_part_batch8"]["p50_ms"] > 0
    assert result["int8"]["bytes"] < result["fp32"]["bytes"] / 3
    assert result["int8_speedup_batch1"] > 0 and result["machine"]["cores"] >= 1
