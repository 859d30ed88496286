"""``cellctl quantize FP32 INT8 --calibration DIR --profile NAME``: static INT8 quantization.

onnxruntime post-training static quantization, QDQ format, weights int8 per channel,
activations uint8 (the fast U8S8 path on x86 CPUs), activation ranges calibrated (MinMax) on
views prepared exactly as the daemon prepares them, from images in the eval layout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cellctl.commands.common import find_profile, report
from cellctl.config import ConfigError, ResolvedProfile, file_sha256
from cellctl.evaluation import view_batch
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
            data, fmt = read_camera_image(path, kind, self._rp.profile)
            self._pending = list(view_batch(self._rp, data, fmt, kind))
        if not self._pending:
            return None
        return {self._input: self._pending.pop(0)[None]}


def quantize(rp: ResolvedProfile, fp32: Path, out: Path, calibration: Path, max_images: int) -> str:
    import onnx

    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out), ViewReader(rp, calibration, input_name, max_images),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return file_sha256(out)


def main(args: argparse.Namespace) -> int:
    try:
        rp, _, _ = find_profile(args.profile, args.config, verify_model=False)
        sha = quantize(rp, args.model, args.output, args.calibration, args.max_images)
    except ConfigError as exc:
        report(exc)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (sha256 {sha}); put this sha256 in the profile's model.sha256")
    return 0
