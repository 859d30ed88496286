"""Static INT8 quantization of a student (``cellctl quantize``, ``cellctl train``).

onnxruntime post-training static quantization, QDQ format, weights int8 per channel,
activations uint8 (the fast U8S8 path on x86 CPUs), activation ranges calibrated (MinMax) on
views prepared exactly as the daemon prepares them: from images in the eval layout
(``quantize``) or from tiles a trainer already prepared with the daemon's code
(``quantize_views``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cellctl.config import ResolvedProfile, file_sha256
from cellctl.inspection import Frame, image_tiles, model_inputs
from cellctl.ood.graph import remove_guard
from cellctl.vision.images import labelled_images, read_camera_image


class ViewReader(CalibrationDataReader):
    def __init__(self, rp: ResolvedProfile, root: Path, input_name: str, max_images: int) -> None:
        items = labelled_images(root)
        if not items:
            raise FileNotFoundError(f"no calibration images under {root}/{{head,shank}}/{{good,defect}}/")
        order = np.random.default_rng(0).permutation(len(items))[:max_images]
        self._items = [items[i] for i in sorted(order)]
        self._rp, self._input = rp, input_name
        self._pending: list[np.ndarray] = []

    def get_next(self) -> dict[str, np.ndarray] | None:
        while not self._pending and self._items:
            path, kind, _ = self._items.pop(0)
            frame = Frame(*read_camera_image(path, kind, self._rp.profile))
            tiles, _ = image_tiles(frame, kind, self._rp)  # the tiles the daemon would score
            self._pending = list(model_inputs(frame, tiles, self._rp))
        if not self._pending:
            return None
        return {self._input: self._pending.pop(0)[None]}


class _Views(CalibrationDataReader):
    def __init__(self, views: Iterable[np.ndarray], input_name: str) -> None:
        self._views: Iterator[np.ndarray] = iter(views)
        self._input = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        view = next(self._views, None)
        return None if view is None else {self._input: view[None].astype(np.float32)}


def quantize(rp: ResolvedProfile, fp32: Path, out: Path, calibration: Path, max_images: int) -> str:
    """INT8 model calibrated on the views of up to ``max_images`` images of a folder."""
    return _quantize(fp32, out, lambda name: ViewReader(rp, calibration, name, max_images))


def quantize_views(fp32: Path, out: Path, views: Iterable[np.ndarray]) -> str:
    """INT8 model calibrated on ``views`` (each 3 x S x S, prepared as the daemon prepares them)."""
    return _quantize(fp32, out, lambda name: _Views(views, name))


def _quantize(fp32: Path, out: Path, reader: Callable[[str], CalibrationDataReader]) -> str:
    import onnx

    model = onnx.load(str(fp32))
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        if remove_guard(model):  # the guard's whitening must stay float: `cellctl guard` refits it on the INT8 features
            fp32 = Path(tmp) / "unguarded.onnx"
            onnx.save(model, str(fp32))
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            reader(input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return file_sha256(out)


QUANTIZED_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}
)
INT8_TYPES = frozenset({2, 3})  # onnx.TensorProto.UINT8, INT8


def quantized_already(model: Any) -> str | None:
    """Why an ONNX model is already quantized (its first Q/DQ node or int8 weight), or None."""
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS or node.op_type.startswith("QLinear"):
            return f"it has {node.op_type} nodes"
    for init in model.graph.initializer:
        if init.data_type in INT8_TYPES:
            return f"its weight {init.name!r} is 8-bit"
    return None


def check_input(path: Path, out: Path) -> str | None:
    """Why ``path`` cannot be quantized into ``out`` (None if it can)."""
    import onnx

    if path.resolve() == out.resolve():
        return f"the output {out} is the input model; write the INT8 model to another file"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types for a file that is no model
        return f"{path} is not an ONNX model: {' '.join(str(exc).split())[:200]}"
    if not model.graph.input:
        return f"{path} has no inputs"
    reason = quantized_already(model)
    if reason is not None:
        return f"{path} is already quantized ({reason}); quantize the FP32 model instead"
    return None
