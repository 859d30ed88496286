"""Model latency side by side in one process (``cellctl bench``, ``cellctl promote``).

Every session runs on the same inputs, interleaved round by round so that drift of the
machine (other load, frequency) hits all alike. A dense CNN's latency does not depend on
pixel values, so the inputs are uniform noise in the model's input range.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cellctl.config import file_sha256
from cellctl.inference import OnnxInferencer
from cellctl.machine import describe


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


def bench(models: dict[str, Path], views: int, size: int, rounds: int, threads: int) -> dict[str, object]:
    sessions = {
        name: OnnxInferencer(path, file_sha256(path), threads, input_size_px=size) for name, path in models.items()
    }
    rng = np.random.default_rng(0)
    one = rng.random((1, 3, size, size), dtype=np.float32)
    part = rng.random((views, 3, size, size), dtype=np.float32)
    for s in sessions.values():  # warm-up: first runs allocate and pick kernels
        s.infer(one), s.infer(part)
    single: dict[str, list[float]] = {n: [] for n in sessions}
    batch: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(rounds):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.infer(one)
            single[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            s.infer(part)
            batch[name].append(time.perf_counter() - t0)
    result: dict[str, object] = {
        name: {
            "per_view_batch1": _stats(single[name]),
            f"per_part_batch{views}": _stats(batch[name]),
            "bytes": models[name].stat().st_size,
        }
        for name in sessions
    }
    if {"fp32", "int8"} <= set(sessions):
        result["int8_speedup_batch1"] = round(float(np.median(single["fp32"]) / np.median(single["int8"])), 2)
        result[f"int8_speedup_batch{views}"] = round(float(np.median(batch["fp32"]) / np.median(batch["int8"])), 2)
    result["machine"] = {**describe(), "threads": threads, "rounds": rounds}
    return result
