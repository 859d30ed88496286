"""The INT8 student on onnxruntime, loaded once per model file and checked by sha256.

A model the daemon runs gives two numbers per view: ``defect_prob`` and ``ood_score``, the
out-of-distribution guard that ships in the model file with its threshold in the model's
metadata (cellctl.ood; added by `cellctl guard`). A model without a usable guard is refused
at load: none of its views could be trusted, so no part could pass.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cellctl import ood
from cellctl.drivers import DriverInitError

INPUT = "image"
OUTPUT = "defect_prob"
OOD_OUTPUT = ood.OUTPUT
FLOAT = "tensor(float)"
NO_GUARD = (
    f"no output {OOD_OUTPUT!r}: the model has no out-of-distribution guard; add one with "
    "`cellctl guard MODEL OUT --fit DIR --holdout DIR --profile NAME`"
)


def interface_problems(session: Any, input_size_px: int | None) -> list[str]:
    """What differs between a session's inputs/outputs and what the daemon feeds and reads:
    one input ``image`` float32 [N, 3, S, S] (S = the profile's input_size_px, N free), the
    outputs ``defect_prob`` and ``ood_score`` float32 [N], and the guard's threshold in the
    model's metadata. A dimension given as a name is dynamic and accepted."""
    problems: list[str] = []
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [INPUT]:
        problems.append(f"inputs are {[i.name for i in inputs]}, expected exactly [{INPUT!r}]")
    else:
        (image,) = inputs
        wanted = ["N", 3, input_size_px or "S", input_size_px or "S"]
        if image.type != FLOAT:
            problems.append(f"input {INPUT!r} is {image.type}, expected {FLOAT} (float32)")
        if not _shape_fits(image.shape, [None, 3, input_size_px, input_size_px]):
            problems.append(f"input {INPUT!r} has shape {image.shape}, expected {wanted}")
    outputs = {o.name: o for o in session.get_outputs()}
    out = outputs.get(OUTPUT)
    if out is None:
        problems.append(f"no output {OUTPUT!r} (outputs: {list(outputs)})")
    else:
        problems += _per_view_problems(out, "one probability per view")
    guard = outputs.get(OOD_OUTPUT)
    if guard is None:
        problems.append(NO_GUARD)
    else:
        problems += _per_view_problems(guard, "one out-of-distribution score per view")
        threshold = ood.threshold_problem(_metadata(session))
        if threshold is not None:
            problems.append(threshold)
    return problems


def _per_view_problems(out: Any, what: str) -> list[str]:
    problems = []
    if out.type != FLOAT:
        problems.append(f"output {out.name!r} is {out.type}, expected {FLOAT} (float32)")
    if not _shape_fits(out.shape, [None]):
        problems.append(f"output {out.name!r} has shape {out.shape}, expected [N] ({what})")
    return problems


def _metadata(session: Any) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


def _shape_fits(shape: Any, wanted: list[int | None]) -> bool:
    """``shape`` (ints, or names / None for dynamic axes) can hold ``wanted`` (None: any)."""
    if shape is None or len(shape) != len(wanted):
        return False
    return all(w is None or not isinstance(d, int) or d == w for d, w in zip(shape, wanted, strict=True))


def verify_model(path: Path, input_size_px: int | None) -> list[str]:
    """Problems of loading ``path`` with onnxruntime and running it in the daemon ([] = fine).

    Blocking (builds a session); for `cellctl check` and the preflight of `cellctl run`.
    """
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [f"onnxruntime cannot load it: {first}"]
    return interface_problems(session, input_size_px)


class OnnxInferencer:
    """Runs a model whose input ``image`` is N x 3 x S x S float32 and whose outputs
    ``defect_prob`` and ``ood_score`` are N each.

    Blocking: call it from an executor thread, never on the event loop.
    """

    def __init__(self, path: Path, sha256: str, threads: int, *, input_size_px: int | None = None) -> None:
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
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise DriverInitError(f"model {path}: onnxruntime cannot load it: {exc}") from exc
        problems = interface_problems(self._session, input_size_px)
        if problems:
            raise DriverInitError(f"model {path}: {'; '.join(problems)}; refusing to run it")
        self._input = INPUT
        # checked finite and > 0 by interface_problems; None only in the Protocol's terms
        # (a model without a guard), which this class refuses to load
        self.ood_threshold: float | None = float(_metadata(self._session)[ood.THRESHOLD])

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(defect_prob (N,), ood_score (N,)) as float64 for an N x 3 x S x S float32 batch."""
        probs, scores = self._session.run([OUTPUT, OOD_OUTPUT], {self._input: batch})
        n = len(batch)
        return np.asarray(probs, dtype=np.float64).reshape(n), np.asarray(scores, dtype=np.float64).reshape(n)
