"""Which parts of a student stay float when INT8 would change its decisions.

Post-training quantization gives one range to each activation tensor. A network whose
activations are heavy-tailed (a few values hundreds of times the typical one, as in the last
residual block of some students) keeps almost nothing of them in 256 levels, and its INT8
model decides views otherwise than its FP32 one: onnxruntime's per-tensor error report
could not say which tensor (every ReLU fused into its convolution reads 0.01-6 dB, healthy or not),
the decisions can. So the measure is the decisions: quantize, compare INT8 with FP32 on check
views at the profiles' thresholds, and while more than ``TOLERATED`` of them differ, keep
float the one group of nodes (a network block: the node names' module path) whose float copy
brings INT8 closest, up to a few groups. A sound quantization still flips the odd view that
FP32 scores within a hair of the threshold, and a block kept float costs speed (the last two
blocks of the ResNet-18 student: about 45 % more time per part), so a few flips are not
chased. Everything else stays INT8; ``cellctl bench`` shows the speed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})  # where INT8 saves time
CHUNKS = 8  # groups of a graph whose node names carry no module path
BETTER = 0.9  # with as many decisions differing, a group must cut the mean score change by 10 %
TOLERATED = 0.01  # of the check views may be decided otherwise before a block is kept float


@dataclass(frozen=True)
class Agreement:
    """INT8 against FP32 on the check views."""

    views: int
    decisions_differ: int  # at any of the thresholds
    mean_abs_change: float  # |p_int8 - p_fp32|
    max_abs_change: float

    def better_than(self, other: Agreement) -> bool:
        if self.decisions_differ != other.decisions_differ:
            return self.decisions_differ < other.decisions_differ
        return self.mean_abs_change < BETTER * other.mean_abs_change

    def record(self) -> dict[str, Any]:
        return asdict(self)


def agreement(p32: np.ndarray, p8: np.ndarray, thresholds: Sequence[float]) -> Agreement:
    change = np.abs(p8.astype(np.float64) - p32.astype(np.float64))
    differ = np.zeros(len(p32), dtype=bool)
    for t in thresholds:
        differ |= (p32 >= t) != (p8 >= t)
    differ |= ~np.isfinite(p8)
    finite = change[np.isfinite(change)]
    return Agreement(
        views=len(p32),
        decisions_differ=int(differ.sum()),
        mean_abs_change=round(float(finite.mean()), 5) if finite.size else 0.0,
        max_abs_change=round(float(finite.max()), 5) if finite.size else 0.0,
    )


def node_groups(nodes: Sequence[Any]) -> dict[str, list[str]]:
    """The blocks of a graph, in graph order, each with the names of its nodes; only blocks
    with a weighted operation (a convolution or a matrix product) are candidates.

    A torch export names nodes by module path (``/net/layers/layers.7/conv1/Conv``): a block is
    that path's first three parts (``net/layers/layers.7``). A graph without such names is cut
    into ``CHUNKS`` runs of consecutive weighted nodes."""
    paths = [[p for p in str(n.name).split("/") if p][:-1] for n in nodes]
    groups: dict[str, list[str]] = {}
    if sum(1 for p in paths if p) >= len(nodes) // 2 and nodes:
        for n, path in zip(nodes, paths, strict=True):
            groups.setdefault("/".join(path[:3]) or str(n.name), []).append(str(n.name))
    else:
        weighted = [i for i, n in enumerate(nodes) if n.op_type in WEIGHTED_OPS]
        size = max(1, -(-len(weighted) // CHUNKS))
        for k in range(0, len(weighted), size):
            first, last = weighted[k], weighted[min(k + size, len(weighted)) - 1]
            names = [str(nodes[i].name) for i in range(first, last + 1)]
            groups[f"nodes {names[0]}..{names[-1]}"] = names
    weighted_names = {str(n.name) for n in nodes if n.op_type in WEIGHTED_OPS}
    return {g: names for g, names in groups.items() if weighted_names.intersection(names)}


@dataclass(frozen=True)
class Search:
    kept_float: list[str]  # groups, in the order they were kept
    nodes_float: list[str]
    before: Agreement
    after: Agreement
    quantizations: int

    def record(self) -> dict[str, Any]:
        return {
            "kept_float": self.kept_float,
            "nodes_float": len(self.nodes_float),
            "before": self.before.record(),
            "after": self.after.record(),
            "quantizations": self.quantizations,
        }


def search(
    groups: dict[str, list[str]],
    measure: Callable[[list[str]], Agreement],
    max_groups: int,
) -> Search:
    """Greedy: ``measure(nodes kept float)`` quantizes and compares; each round keeps float the
    group that helps most, while more than ``TOLERATED`` of the views are decided otherwise and
    a group helps."""
    kept: list[str] = []
    before = best = measure([])
    runs = 1
    while best.decisions_differ > int(TOLERATED * best.views) and len(kept) < max_groups:
        choice: tuple[str, Agreement] | None = None
        for group in groups:
            if group in kept:
                continue
            trial = measure(_nodes(groups, [*kept, group]))
            runs += 1
            if trial.better_than(choice[1] if choice else best):
                choice = (group, trial)
        if choice is None:
            break
        kept.append(choice[0])
        best = choice[1]
    return Search(kept, _nodes(groups, kept), before, best, runs)


def _nodes(groups: dict[str, list[str]], kept: Sequence[str]) -> list[str]:
    return [name for g in kept for name in groups[g]]


def describe(record: dict[str, Any]) -> str:
    """One line for a quantization record (``Search.record()`` and its thresholds)."""
    before, after, kept = record["before"], record["after"], record["kept_float"]
    differ, change = f"{before['decisions_differ']}", f"{before['mean_abs_change']:.3g}"
    where = "every block quantized"
    if kept:
        where = f"kept float: {', '.join(kept)} ({record['nodes_float']} nodes)"
        differ += f" -> {after['decisions_differ']}"
        change += f" -> {after['mean_abs_change']:.3g}"
    thresholds = "/".join(f"{t:g}" for t in record["thresholds"])
    return (
        f"{where}; against FP32 on {after['views']} check views at threshold {thresholds}: "
        f"{differ} decided otherwise, mean |score change| {change}"
    )
