"""INT8 that would change decisions keeps the guilty block float (cellctl.keep_float, through
onnxruntime's real quantizer on a small real ONNX graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cellctl.cli import main as cli
from cellctl.keep_float import Agreement, agreement, describe, node_groups, search
from cellctl.quantization import Check, check_views, quantize_views

SPIKE = 1e6  # the second channel of block 1 is 0 below x = 0.999 and up to 1,000 at x = 1


def _graph(path: Path) -> None:
    """image (N x 1 x 2 x 2, a constant x per view) -> layers.0 (x) -> layers.1 (two channels,
    x and a ReLU spike that only x = 1 reaches, recombined to x) -> fc -> sigmoid(40 (x - 0.5)).
    The spike's range, calibrated on a view with x = 1, leaves x two levels inside layers.1."""
    w = {
        "w0": np.ones((1, 1, 1, 1), np.float32),
        "b0": np.zeros(1, np.float32),
        "w1": np.array([[[[1.0]]], [[[SPIKE]]]], np.float32),
        "b1": np.array([0.0, -0.999 * SPIKE], np.float32),
        "w2": np.array([[[[1.0]], [[0.0]]]], np.float32),
        "b2": np.zeros(1, np.float32),
        "fw": np.array([[40.0]], np.float32),
        "fb": np.array([-20.0], np.float32),
        "shape": np.array([-1], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w0", "b0"], ["a0"], name="/net/layers/layers.0/conv1/Conv"),
        helper.make_node("Conv", ["a0", "w1", "b1"], ["a1"], name="/net/layers/layers.1/conv1/Conv"),
        helper.make_node("Relu", ["a1"], ["r1"], name="/net/layers/layers.1/Relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["a2"], name="/net/layers/layers.1/conv2/Conv"),
        helper.make_node("GlobalAveragePool", ["a2"], ["pooled"], name="/net/GlobalAveragePool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="/net/Flatten"),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logit"], name="/net/fc/Gemm", transB=1),
        helper.make_node("Sigmoid", ["logit"], ["prob"], name="/net/Sigmoid"),
        helper.make_node("Reshape", ["prob", "shape"], ["defect_prob"], name="/net/Reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "spike",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 2, 2])],
        [helper.make_tensor_value_info("defect_prob", TensorProto.FLOAT, ["n"])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _views(xs: np.ndarray) -> np.ndarray:
    return np.broadcast_to(xs.astype(np.float32)[:, None, None, None], (len(xs), 1, 2, 2)).copy()


# x away from the threshold's 0.5 by more than INT8's step on [0, 1]: a sound INT8 decides them as FP32
CHECK = _views(np.concatenate([np.linspace(0.05, 0.45, 20), np.linspace(0.55, 0.95, 20)]))
CALIBRATION = _views(np.linspace(0.0, 1.0, 41))  # holds x = 1: the spike's full range


def _quantize(tmp_path: Path, max_groups: int) -> tuple[dict, Path]:
    fp32, out = tmp_path / "fp32.onnx", tmp_path / f"int8-{max_groups}.onnx"
    _graph(fp32)
    done = quantize_views(fp32, out, lambda: iter(CALIBRATION), Check(CHECK, (0.5,), max_groups), threads=1)
    return done, out


def _run(model: Path, views: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["defect_prob"], {"image": views})[0]


def test_quantizing_everything_changes_decisions(tmp_path: Path) -> None:
    done, out = _quantize(tmp_path, 0)
    assert done["kept_float"] == []
    assert done["before"]["decisions_differ"] >= 10  # x lost inside layers.1: many views flip
    p8, p32 = _run(out, CHECK), _run(tmp_path / "fp32.onnx", CHECK)
    assert int(((p8 >= 0.5) != (p32 >= 0.5)).sum()) == done["after"]["decisions_differ"]


def test_the_guilty_block_stays_float_and_decisions_agree(tmp_path: Path) -> None:
    done, out = _quantize(tmp_path, 2)
    assert done["kept_float"] == ["net/layers/layers.1"]  # not layers.0, not fc: they did not help
    assert done["before"]["decisions_differ"] >= 10 and done["after"]["decisions_differ"] == 0
    p8, p32 = _run(out, CHECK), _run(tmp_path / "fp32.onnx", CHECK)
    assert np.array_equal(p8 >= 0.5, p32 >= 0.5)
    model = onnx.load(str(out))
    ops = {n.name: n.op_type for n in model.graph.node}
    assert "QuantizeLinear" in ops.values()  # the rest is still INT8
    float_weights = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    assert {"w1", "w2"} <= float_weights and "w0" not in float_weights  # layers.1 float, layers.0 int8
    assert "kept float: net/layers/layers.1 (3 nodes)" in describe(done)


def test_a_graph_the_profile_cannot_feed_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fp32 = tmp_path / "fp32.onnx"
    _graph(fp32)  # N x 1 x 2 x 2, not N x 3 x 224 x 224
    (tmp_path / "calib").mkdir()
    argv = ["quantize", str(fp32), str(tmp_path / "q.onnx"), "--calibration", str(tmp_path / "calib")]
    assert cli([*argv, "--profile", "m8x40-hex"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "takes 'image' of shape ['N', 1, 2, 2]" in err and "N x 3 x 224 x 224" in err
    assert not (tmp_path / "q.onnx").exists()


def test_agreement_counts_any_threshold_and_non_finite_scores() -> None:
    p32 = np.array([0.1, 0.45, 0.55, 0.9, 0.3])
    p8 = np.array([0.1, 0.55, 0.55, 0.7, np.nan])
    a = agreement(p32, p8, (0.5,))
    assert a.decisions_differ == 2 and a.views == 5  # 0.45 -> 0.55, and the NaN
    assert a.mean_abs_change == pytest.approx((0 + 0.1 + 0 + 0.2) / 4)
    assert agreement(p32, p8, (0.5, 0.8)).decisions_differ == 3  # 0.9 -> 0.7 crosses 0.8


def test_search_keeps_groups_only_while_they_help() -> None:
    groups = {"a": ["a1"], "b": ["b1", "b2"], "c": ["c1"]}
    cost = {(): 9, ("b1", "b2"): 3, ("a1",): 9, ("c1",): 8, ("b1", "b2", "a1"): 3, ("b1", "b2", "c1"): 0}
    seen: list[tuple[str, ...]] = []

    def measure(nodes: list[str]) -> Agreement:
        seen.append(tuple(nodes))
        return Agreement(10, cost[tuple(nodes)], 0.1, 0.2)

    found = search(groups, measure, max_groups=2)
    assert found.kept_float == ["b", "c"] and found.after.decisions_differ == 0 and found.before.decisions_differ == 9
    assert found.quantizations == len(seen) == 1 + 3 + 2
    assert search(groups, measure, max_groups=0).kept_float == []
    none_help = search({"a": ["a1"]}, measure, max_groups=3)
    assert none_help.kept_float == [] and none_help.after.decisions_differ == 9


def test_a_sound_quantization_is_not_searched() -> None:
    """Two of 200 views flipped (FP32 within a hair of the threshold) is within TOLERATED:
    no block is kept float for them; three are not."""

    def measure_with(differ: int):
        calls: list[list[str]] = []

        def measure(nodes: list[str]) -> Agreement:
            calls.append(nodes)
            return Agreement(200, differ if not nodes else 0, 0.01, 0.1)

        return measure, calls

    measure, calls = measure_with(2)
    assert search({"a": ["a1"]}, measure, max_groups=2).kept_float == [] and len(calls) == 1
    measure, calls = measure_with(3)
    assert search({"a": ["a1"]}, measure, max_groups=2).kept_float == ["a"] and len(calls) == 2


def test_graphs_without_module_paths_are_cut_in_runs_of_weighted_nodes() -> None:
    nodes = [helper.make_node("Conv" if i % 2 else "Relu", ["x"], ["y"], name=f"n{i}") for i in range(40)]
    groups = node_groups(nodes)
    assert 1 < len(groups) <= 8
    grouped = [n for names in groups.values() for n in names]
    assert len(grouped) == len(set(grouped)) and {f"n{i}" for i in range(1, 40, 2)} <= set(grouped)


def test_check_views_of_nothing_is_an_empty_batch() -> None:
    assert check_views([]).shape[0] == 0
