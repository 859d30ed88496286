"""``cellctl pod --profile NAME``: probability of detection of the decision path (MIL-HDBK-1823A).

The experiment: ``--parts`` good parts are drawn from the simulator, any indication they carry
removed (a good part may carry sub-threshold ones: they would blur both the baseline and the
injections). Each part is inspected

- as it is: the false-call baseline (a REJECT of a clean part is a false call), and
- once per sweep with ONE injected indication (a crack), on the head or on the shank:
  the contrast sweep (grey levels over the local surface, log-spaced 10-150, length fixed at
  3 mm, well above what a profile asks to find) and the length sweep (mm, log-spaced
  0.2-6, contrast fixed at 80, clearly visible).

Each sweep deals its ``--parts`` sizes, log-spaced over its range, to the parts in a seeded
random order, so every size is tried on a different part. Every part goes through
``cellctl.inspection.inspect_part`` with the profile's model: the daemon's own locate, tile,
guard and decide. **hit = REJECT.** A RECHECK is not a hit (the part goes to a person: the
automatic inspection did not find the indication); it is a miss in the fit and counted
apart in ``rechecks``. The hit/miss outcomes of each sweep are fitted by maximum likelihood
with the log-logistic link (cellctl.pod.fit), which gives a50, a90 and a90/95 in the sweep's
unit.

Deterministic for ``--seed``. Renders and inspections run in two worker processes (each with
its own renderer and one-thread model); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellctl.commands.common import find_profile, report
from cellctl.config import ConfigError, ResolvedProfile
from cellctl.drivers import DriverInitError
from cellctl.inference import OnnxInferencer
from cellctl.inspection import Frame, Inspection, inspect_part
from cellctl.outcome import Outcome
from cellctl.pod import BOUND, binomial_upper, fit_pod
from cellctl.pod.plot import Panel, write_png
from cellctl.sim.part import SimPart, make_indication, sample_part, with_indications
from cellctl.sim.scene import Renderer
from cellctl.sim.sensor import encode

KINDS = ("head", "shank")
FIXED_LENGTH_MM = 3.0  # the contrast sweep's length: clearly detectable
FIXED_CONTRAST = 80.0  # the length sweep's contrast: clearly visible
WORKERS = 2  # the cell's computer has two cores
FIGURES = ("a50", "a90", "a90_95")
HIT = "REJECT; a RECHECK is not a hit: it counts as a miss in the fit and is reported in rechecks"


@dataclass(frozen=True)
class Sweep:
    name: str  # "contrast" | "length"
    unit: str
    lo: float
    hi: float
    axis: str  # the plot's x label

    def injection(self, size: float) -> tuple[float, float]:
        """(length mm, contrast grey levels) of the indication for this sweep size."""
        return (FIXED_LENGTH_MM, size) if self.name == "contrast" else (size, FIXED_CONTRAST)

    def fixed(self) -> dict[str, float]:
        return {"length_mm": FIXED_LENGTH_MM} if self.name == "contrast" else {"contrast": FIXED_CONTRAST}

    def profile_minimum(self, rp: ResolvedProfile) -> float:
        """The smallest indication the profile says the cell finds, in this sweep's unit."""
        ins = rp.profile.inspection
        return ins.min_indication_contrast if self.name == "contrast" else ins.min_indication_length_mm


SWEEPS = (
    Sweep("contrast", "grey levels", 10.0, 150.0, "contrast (grey levels over the local surface)"),
    Sweep("length", "mm", 0.2, 6.0, "length (mm)"),
)


@dataclass(frozen=True)
class Trial:
    part_index: int
    part: SimPart
    kind: str | None  # region of the injected indication; None: the part as it is (baseline)
    sweep: str | None
    size: float | None  # in the sweep's unit


@dataclass(frozen=True)
class Result:
    outcome: str  # "PASS" | "REJECT" | "RECHECK"
    reason: str
    reject_kinds: tuple[str, ...]  # kinds of the trusted views that scored a defect


def main(args: argparse.Namespace) -> int:
    try:
        rp, _, _ = find_profile(args.profile, args.config)
    except ConfigError as exc:
        report(exc)
        return 2
    try:  # the model the workers will load, refused here first with one line
        OnnxInferencer(rp.model_path, rp.profile.model.sha256, 1, input_size_px=rp.profile.preprocess.input_size_px)
    except (DriverInitError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    started = time.monotonic()
    trials = plan_trials(rp, args.parts, args.seed)
    results = run_trials(rp, trials, args.seed)
    summary, panels = summarise(rp, trials, results, args.parts, args.seed)
    summary["seconds"] = round(time.monotonic() - started, 1)
    if args.plot is not None:
        write_png(args.plot, panels, cols=len(SWEEPS), caption=_caption(summary))
        summary["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(summary))
    else:
        print_table(summary)
    return 0


def plan_trials(rp: ResolvedProfile, parts: int, seed: int) -> list[Trial]:
    """The good parts, each as it is and with one injection per (kind, sweep), part by part."""
    geometry, ins = rp.profile.geometry, rp.profile.inspection
    rng = np.random.default_rng([seed, 1])
    minimum = {"min_length_mm": ins.min_indication_length_mm, "min_contrast": ins.min_indication_contrast}
    goods = [
        with_indications(sample_part(rng, geometry, f"{rp.name}-pod-{seed}-{i:04d}", False, **minimum), ())
        for i in range(parts)
    ]
    # each sweep's sizes, log-spaced over its range, dealt to the parts in a seeded order
    sizes: dict[tuple[str, str], np.ndarray] = {}
    for k, kind in enumerate(KINDS):
        for s, sweep in enumerate(SWEEPS):
            grid = np.geomspace(sweep.lo, sweep.hi, parts) if parts > 1 else np.array([math.sqrt(sweep.lo * sweep.hi)])
            sizes[kind, sweep.name] = np.random.default_rng([seed, 2, k, s]).permutation(grid)
    trials: list[Trial] = []
    for i, good in enumerate(goods):
        trials.append(Trial(i, good, None, None, None))
        for k, kind in enumerate(KINDS):
            for s, sweep in enumerate(SWEEPS):
                size = float(sizes[kind, sweep.name][i])
                length_mm, contrast = sweep.injection(size)
                ind_rng = np.random.default_rng([seed, 3, i, k, s])
                indication = make_indication(ind_rng, geometry, kind, length_mm, contrast, kind="crack")
                trials.append(Trial(i, with_indications(good, (indication,)), kind, sweep.name, size))
    return trials


def run_trials(rp: ResolvedProfile, trials: Sequence[Trial], seed: int) -> list[Result]:
    """Each trial rendered and inspected in a worker process; results in trial order."""
    workers = max(1, min(WORKERS, os.cpu_count() or 1, len(trials)))
    progress = _Progress(len(trials))
    # spawn, not fork: onnxruntime's thread pools do not survive a fork
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(rp, seed))
    results: list[Result] = []
    try:
        for result in pool.map(_run_trial, trials, chunksize=2):
            results.append(result)
            progress.step()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    progress.done()
    return results


# --------------------------------------------------------------------------- worker process
_worker: dict[str, Any] = {}


def _init_worker(rp: ResolvedProfile, seed: int) -> None:
    # Ctrl-C is the parent's to handle: it cancels what is queued; a worker finishes its part
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker["rp"] = rp
    _worker["renderer"] = Renderer(seed)
    _worker["model"] = OnnxInferencer(
        rp.model_path, rp.profile.model.sha256, 1, input_size_px=rp.profile.preprocess.input_size_px
    )


def _run_trial(trial: Trial) -> Result:
    rp: ResolvedProfile = _worker["rp"]
    heads, strip = render(_worker["renderer"], rp, trial.part)
    inspection = inspect_part(heads, strip, rp, _worker["model"])
    return _result(inspection, rp.profile.decision.threshold)


def render(renderer: Renderer, rp: ResolvedProfile, part: SimPart) -> tuple[list[Frame], Frame]:
    """The part as the cameras deliver it: one frame per head position and the strip (the
    renderer calls of ``cellctl sim --export``, at gain 1: the nominal light)."""
    p = rp.profile
    head_format, strip_format = p.frame_camera.pixel_format, p.line_scan.pixel_format
    heads = [Frame(encode(renderer.head_view(part, a).image, head_format), head_format) for a in p.head_positions_deg]
    strip = renderer.strip(part, p.line_scan.lines_per_revolution, p.line_scan.line_width_px)
    return heads, Frame(encode(strip.image, strip_format), strip_format)


def _result(inspection: Inspection, threshold: float) -> Result:
    d = inspection.decision
    kinds = sorted({v.kind for v in inspection.views if v.trusted and v.score is not None and v.score >= threshold})
    return Result(str(d.outcome), d.reason, tuple(kinds))


# --------------------------------------------------------------------------- figures
def demonstrated_at(figures: dict[str, Any], minimum: float) -> bool:
    """Whether the trials show POD >= 0.9 with 95 % confidence at the profile's minimum: the
    a90/95 at or below it, or (no curve) all of >= 29 trials hit from a size at or below it.
    MIL-HDBK-1823A: a system is only credited with the sizes it demonstrably finds, so a
    profile's minimum below this is a claim the model does not back."""
    if figures["a90_95"] is not None:
        return bool(figures["a90_95"] <= minimum)
    demo = figures.get("demonstration")
    return bool(demo and demo["size"] <= minimum and demo["pod_lower"] >= 0.9)


def summarise(
    rp: ResolvedProfile, trials: Sequence[Trial], results: Sequence[Result], parts: int, seed: int
) -> tuple[dict[str, Any], list[Panel]]:
    """The report as JSON types, and its figure's panels (rows head, shank; columns contrast, length)."""
    sweeps: dict[str, dict[str, Any]] = {}
    panels: list[Panel] = []
    for kind in KINDS:
        sweeps[kind] = {}
        for sweep in SWEEPS:
            mine = [(t, r) for t, r in zip(trials, results, strict=True) if t.kind == kind and t.sweep == sweep.name]
            sizes = [float(t.size) for t, _ in mine if t.size is not None]
            hits = [r.outcome == Outcome.REJECT for _, r in mine]
            recheck = [r.outcome == Outcome.RECHECK for _, r in mine]
            fit = fit_pod(sizes, hits)
            figures = fit.as_dict()
            del figures["bound"], figures["size_range"]  # said once, at the top; = "range"
            # the same trials without the RECHECKs: what the model finds among the parts the
            # guard and locate let it judge (a diagnosis, not the POD of the cell)
            judged = fit_pod(
                [a for a, rc in zip(sizes, recheck, strict=True) if not rc],
                [h for h, rc in zip(hits, recheck, strict=True) if not rc],
            ).as_dict()
            minimum = sweep.profile_minimum(rp)
            sweeps[kind][sweep.name] = {
                "unit": sweep.unit,
                "range": [sweep.lo, sweep.hi],
                "fixed": sweep.fixed(),
                **figures,
                "profile_minimum": minimum,
                "meets_profile_minimum": demonstrated_at(figures, minimum),
                "rechecks": sum(recheck),
                # hits whose REJECT came only from views of the other kind: the injection
                # was not what was seen (a false call of that part, counted as a hit all the same)
                "hits_elsewhere": sum(r.outcome == Outcome.REJECT and kind not in r.reject_kinds for _, r in mine),
                "excluding_rechecks": {key: judged[key] for key in ("n", "hits", *FIGURES, "why", "reason")},
                "trials": [[round(a, 4), r.outcome] for a, (_, r) in zip(sizes, mine, strict=True)],
            }
            fixed = f"length {FIXED_LENGTH_MM:g} mm" if sweep.name == "contrast" else f"contrast {FIXED_CONTRAST:g}"
            title = f"{kind}: {sweep.name} sweep ({fixed})"
            panels.append(Panel(fit, title, sweep.axis, rechecks=tuple(recheck)))
    base = [r for t, r in zip(trials, results, strict=True) if t.kind is None]
    false_calls = [r for r in base if r.outcome == Outcome.REJECT]
    rechecks = [r for r in base if r.outcome == Outcome.RECHECK]
    n = len(base)
    by_kind = Counter(k for r in false_calls for k in r.reject_kinds)
    return {
        "profile": rp.name,
        "model": {"path": str(rp.model_path), "sha256": rp.profile.model.sha256},
        "threshold": rp.profile.decision.threshold,
        "parts": parts,
        "seed": seed,
        "hit": HIT,
        "bound": BOUND,
        "sweeps": sweeps,
        "false_calls": {
            "n": n,
            "false_calls": len(false_calls),
            "rate": len(false_calls) / n if n else None,
            "upper95": binomial_upper(len(false_calls), n),
            "by_kind": {k: by_kind.get(k, 0) for k in KINDS},
            "rechecks": len(rechecks),
            "recheck_rate": len(rechecks) / n if n else None,
            "examples": [r.reason for r in (false_calls + rechecks)[:3]],
        },
    }, panels


def _caption(summary: dict[str, Any]) -> str:
    fc = summary["false_calls"]
    return (
        f"POD of {summary['profile']} (model {Path(summary['model']['path']).name}), {summary['parts']} good parts, "
        f"seed {summary['seed']}; hit = REJECT, RECHECK = miss; good parts as they are: "
        f"{fc['false_calls']} false calls, {fc['rechecks']} RECHECK"
    )


def print_table(summary: dict[str, Any]) -> None:
    fc = summary["false_calls"]
    print(
        f"POD of {summary['profile']} (model {Path(summary['model']['path']).name}), {summary['parts']} good parts, "
        f"seed {summary['seed']}, {summary['seconds']:.0f} s"
    )
    print(f"hit = {summary['hit']}")
    print(f"a90/95: {summary['bound']}")
    print(f"{'kind':6}{'sweep':10}{'unit':>12}{'n':>5}{'hits':>6}{'recheck':>9}{'a50':>9}{'a90':>9}{'a90/95':>9}")
    notes: list[str] = []
    for kind, sweeps in summary["sweeps"].items():
        for name, s in sweeps.items():
            cells = "".join(f"{_cell(s[key]):>9}" for key in FIGURES)
            print(f"{kind:6}{name:10}{s['unit']:>12}{s['n']:>5}{s['hits']:>6}{s['rechecks']:>9}{cells}")
            if s["reason"]:
                notes.append(f"{kind} {name}: no curve: {s['reason']}")
                demo = s["demonstration"]
                if demo:
                    at = f"{demo['size']:.3g} {s['unit']}"
                    notes.append(
                        f"  {demo['trials']} of {demo['trials']} hits at >= {at}: POD >= {demo['pod_lower']:.3f}"
                    )
            else:
                notes += [f"{kind} {name} {key.replace('_', '/')}: {why}" for key, why in s["why"].items()]
            if not s["meets_profile_minimum"]:
                notes.append(
                    f"{kind} {name}: POD 90 % at 95 % confidence is not shown at the profile's minimum "
                    f"{s['profile_minimum']:g} {s['unit']}: the profile claims smaller indications than the model finds"
                )
            if s["rechecks"]:
                ex = s["excluding_rechecks"]
                figures = ", ".join(f"{key.replace('_', '/')} {_cell(ex[key])}" for key in FIGURES)
                notes.append(
                    f"{kind} {name} without its {s['rechecks']} RECHECKs: {ex['hits']} of {ex['n']}, {figures}"
                )
    rate = "-" if fc["rate"] is None else f"{100 * fc['rate']:.1f} %"
    upper = "-" if fc["upper95"] is None else f"{100 * fc['upper95']:.1f} %"
    print(
        f"false calls: {fc['false_calls']} of {fc['n']} good parts ({rate}, 95 % upper bound {upper}); "
        f"RECHECK {fc['rechecks']}"
    )
    for note in notes:
        print(note)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


class _Progress:
    """``pod: 120/400 parts`` on stderr: one updating line on a terminal, a line per 10 % otherwise."""

    def __init__(self, total: int) -> None:
        self._total, self._done = total, 0
        self._tty = sys.stderr.isatty()
        self._started = time.monotonic()
        self._next = 0.1

    def step(self) -> None:
        self._done += 1
        elapsed = time.monotonic() - self._started
        line = f"pod: {self._done}/{self._total} parts inspected, {elapsed:.0f} s"
        if self._tty:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif self._done >= self._next * self._total:
            print(line, file=sys.stderr, flush=True)
            while self._next * self._total <= self._done:
                self._next += 0.1

    def done(self) -> None:
        if self._tty:
            print(file=sys.stderr, flush=True)
