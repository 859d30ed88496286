"""The INT8 student on onnxruntime, loaded once per model file and checked by sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cellctl.drivers import DriverInitError

OUTPUT = "defect_prob"


class OnnxInferencer:
    """Runs a model whose input is N x 3 x S x S float32 and whose output ``defect_prob`` is N.

    Blocking: call it from an executor thread, never on the event loop.
    """

    def __init__(self, path: Path, sha256: str, threads: int) -> None:
        # The bytes that are hashed are the bytes the session is built from: a file swapped
        # between the check and the load cannot slip through.
        model = path.read_bytes()
        actual = hashlib.sha256(model).hexdigest()
        if actual != sha256:
            raise DriverInitError(
                f"model {path}: sha256 {actual} does not match the profile's {sha256}; refusing to run it"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.path = path
        self.sha256 = sha256
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        (probs,) = self._session.run([OUTPUT], {self._input: batch})
        return np.asarray(probs, dtype=np.float64).reshape(len(batch))
