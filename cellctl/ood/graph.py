"""Graph surgery: the guard as float nodes appended to an ONNX model, read from ``features``.

    features (N x C x H x W) -> GlobalAveragePool -> Flatten -> Sub(mean) -> MatMul(W)
        -> Mul(itself) -> ReduceSum(axis 1) -> Sqrt -> ood_score (N)

The nodes are appended after the model's own (and after quantization, for an INT8 model):
they stay float32 whatever the rest of the graph is, and an INT8 model's guard reads the
dequantized feature map it really produces. Everything the guard adds carries the name
prefix ``cellctl_ood/`` and metadata keys start ``cellctl.ood.``, so guarding a guarded model
replaces the old guard instead of stacking a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cellctl.ood import FEATURES, META_PREFIX, OUTPUT
from cellctl.ood.fit import Whitening

PREFIX = "cellctl_ood/"


class GuardError(ValueError):
    """The model cannot carry the guard (no feature map output of the expected form)."""


def feature_output(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The model's ``features`` output, checked to be float32 N x C x H x W."""
    out: onnx.ValueInfoProto
    for out in model.graph.output:
        if out.name == FEATURES:
            t = out.type.tensor_type
            if t.elem_type != TensorProto.FLOAT or len(t.shape.dim) != 4:
                raise GuardError(f"output {FEATURES!r} must be float32 N x C x H x W (the last feature map)")
            return out
    names = [o.name for o in model.graph.output]
    raise GuardError(f"no output {FEATURES!r} (the last feature map the guard reads); outputs: {names}")


def remove_guard(model: onnx.ModelProto) -> bool:
    """Take the guard's nodes, weights, output and metadata out of ``model`` (in place).
    True if there was any."""
    g = model.graph
    removed = [  # a list, not any(...): every field is cleaned
        _drop(g.node, lambda n: n.name.startswith(PREFIX)),
        _drop(g.initializer, lambda t: t.name.startswith(PREFIX)),
        _drop(g.output, lambda o: o.name == OUTPUT),
        _drop(g.value_info, lambda v: v.name.startswith(PREFIX) or v.name == OUTPUT),
        _drop(model.metadata_props, lambda m: m.key.startswith(META_PREFIX)),
    ]
    return any(removed)


def _drop(field: Any, unwanted: Callable[[Any], bool]) -> bool:
    """Remove the items of a repeated protobuf field that are ``unwanted``; True if any."""
    kept = [item for item in field if not unwanted(item)]
    if len(kept) == len(field):
        return False
    del field[:]
    field.extend(kept)
    return True


def add_guard(model: onnx.ModelProto, whitening: Whitening, metadata: dict[str, str] | None = None) -> None:
    """Give ``model`` (in place) the output ``ood_score`` for ``whitening``, replacing any
    guard it had, and the guard's metadata (keys starting ``cellctl.ood.``)."""
    features = feature_output(model)
    channels = features.type.tensor_type.shape.dim[1].dim_value
    if channels and channels != whitening.mean.size:
        raise GuardError(f"{FEATURES!r} has {channels} channels, the guard was fitted on {whitening.mean.size}")
    remove_guard(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise GuardError(f"the model's opset {opset} is older than 13 (ReduceSum with axes as input)")
    p = PREFIX
    g = model.graph
    g.initializer.extend(
        [
            numpy_helper.from_array(whitening.mean.astype(np.float32), p + "mean"),
            numpy_helper.from_array(np.ascontiguousarray(whitening.matrix, dtype=np.float32), p + "whitening"),
            numpy_helper.from_array(np.array([1], np.int64), p + "axis1"),
        ]
    )
    g.node.extend(
        [
            helper.make_node("GlobalAveragePool", [FEATURES], [p + "pooled4d"], name=p + "pool"),
            helper.make_node("Flatten", [p + "pooled4d"], [p + "pooled"], name=p + "flatten", axis=1),
            helper.make_node("Sub", [p + "pooled", p + "mean"], [p + "centred"], name=p + "centre"),
            helper.make_node("MatMul", [p + "centred", p + "whitening"], [p + "whitened"], name=p + "whiten"),
            helper.make_node("Mul", [p + "whitened", p + "whitened"], [p + "squared"], name=p + "square"),
            helper.make_node("ReduceSum", [p + "squared", p + "axis1"], [p + "sum"], name=p + "sum", keepdims=0),
            helper.make_node("Sqrt", [p + "sum"], [OUTPUT], name=p + "sqrt"),
        ]
    )
    batch = features.type.tensor_type.shape.dim[0]
    n: str | int | None = batch.dim_param or (batch.dim_value if batch.HasField("dim_value") else None)
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [n]))
    for key, value in (metadata or {}).items():
        if not key.startswith(META_PREFIX):
            raise ValueError(f"guard metadata key {key!r} must start with {META_PREFIX!r}")
        set_metadata(model, key, value)


def set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    """Set one metadata entry of ``model``, replacing an entry of that key."""
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata entries."""
    return {p.key: p.value for p in model.metadata_props}
