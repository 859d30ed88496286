"""Measure the default student and write its model card: every figure measured, none typed in.

    python -m cellctl.sim.model_card [--parts N] [--quick] [--fp32 PATH] [--int8 PATH] [--out DIR]

Writes OUT/student-int8.card.json (the figures; the system tests read its part-level rates),
OUT/MODEL_CARD.md (rendered from it) and OUT/pod-m8x40-hex.png. OUT defaults to
profiles/models. What it measures (issue 8), each on renders of seeds the student factory never
saw (its renders: seeds 9201-9204, README "The default model"; its guard and INT8 calibration
come from their train and val split):

1. Held-out, per profile, the simulator's default conditions (``conditions.DEFAULT``): every
   image through the daemon's decision path alone (``cellctl eval DIR``) and every part
   whole (``cellctl eval --parts``), FP32 and INT8: accuracy, escapes, false rejects and
   rechecks per view kind and per part. A set is exactly what ``cellctl sim --export DIR
   --profile P --parts N --seed S --defect-rate 0.3`` writes: anyone can re-measure it.
2. The brightness rule (sim/baseline.py: the largest green value inside the part) at its
   best single threshold, fitted on the very set it is scored on (the rule at its most
   optimistic), beside the model: per image and per part, on the held-out renders and on
   ``SEED`` renders, where the rule still works.
3. Each perturbation alone: ``SEED`` with exactly one group of ``PLANT``'s ranges switched on
   (``PERTURBATIONS``), m8x40-hex, INT8, per part.
4. The simulated cell: ``cellctl sim --json`` per profile (PASS/REJECT/RECHECK, escapes,
   false rejects, guard counts, latency).
5. POD: ``cellctl pod --json --plot`` on m8x40-hex.
6. The guard's own figures (the model's ``cellctl.ood.*`` metadata), the training record (the
   factory's ``package-card.json`` and ``package-train.json`` beside the model), the files
   and the machine.

Each part is judged right after it is rendered, on the pixels the export would write (PNG is
lossless, so `cellctl eval` on the export gives the same figures: tests/unit/test_model_card.py),
without writing them: 1,400 parts of 5 frames are some 17 GB of PNG and half the CPU time.
``--work DIR`` writes them as well. Renders and judgements run in two worker processes
(spawned: onnxruntime does not survive a fork), each model on one thread: the cell's computer
has two cores. Progress and timings go to stderr. ``--quick`` shrinks every set, to check the
whole path end to end in minutes.
A model without its guard is refused (``cellctl guard`` adds it), as the daemon refuses it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import multiprocessing
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml

from cellctl import ood
from cellctl.commands.common import embedded_config, find_profile
from cellctl.config import ConfigError, ResolvedProfile, file_sha256
from cellctl.drivers import DriverInitError
from cellctl.evaluation import PARTS, STRIP_FILE, Judged, head_file, judged_inspection, tally
from cellctl.inference import OnnxInferencer
from cellctl.inspection import Frame, Model, inspect_image, inspect_part
from cellctl.machine import describe
from cellctl.ood.graph import PREFIX as GUARD_PREFIX
from cellctl.sim import distillation_table
from cellctl.sim.baseline import MARGIN_MM, RuleScore, best_threshold, max_green_rule, part_region
from cellctl.sim.conditions import DEFAULT, PLANT, SEED, Conditions
from cellctl.sim.export import Shots, export_shots, head_label, sample_parts, shoot, strip_label
from cellctl.sim.scene import Renderer

MODELS = Path(__file__).resolve().parent.parent / "profiles" / "models"
OTHER = PLANT if DEFAULT is SEED else SEED  # the other preset: the rule and the model side by side on both
CARD_FILE = "student-int8.card.json"
CARD_MD = "MODEL_CARD.md"
PROFILES = ("m8x40-hex", "m12x80-hex")
HELDOUT_SEEDS = {"m8x40-hex": 7001, "m12x80-hex": 7002}
SEED_RENDERS_SEED = 7003
PERTURBATION_SEED = 7004  # one seed for every variant: the same draws where the variants agree
POD_SEED = 7005
SIM_SEED = 1  # `cellctl sim`'s default: the run anyone gets
DEFECT_RATE = 0.3
SIM_DEFECT_RATE = 0.1  # `cellctl sim`'s default
SMALL_SETS_PROFILE = "m8x40-hex"  # the SEED renders, the perturbations and POD
WORKERS = 2  # the cell's computer has two cores
RENDER_CHUNK = 4  # parts per task: small, so neither worker idles long at the end
TOP_REASONS = 5


@dataclass(frozen=True)
class Sizes:
    heldout: int  # parts per profile
    seed: int  # SEED renders, m8x40-hex
    perturbation: int  # parts per perturbation, m8x40-hex
    sim: int  # parts per profile through the simulated cell
    pod: int  # good parts of the POD study

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


FULL = Sizes(heldout=400, seed=100, perturbation=60, sim=200, pod=80)
QUICK = Sizes(heldout=12, seed=12, perturbation=6, sim=12, pod=4)


@dataclass(frozen=True)
class Perturbation:
    key: str  # folder and card key
    title: str
    fields: tuple[str, ...]  # the Conditions fields taken from PLANT


# Every Conditions field in which PLANT differs from SEED is in exactly one group
# (tests/unit/test_model_card.py holds the table to that).
PERTURBATIONS = (
    Perturbation("pose", "pose: position, scale, tilt, run-out", ("shift_mm", "scale", "tilt_deg", "runout_mm")),
    Perturbation("blur", "focus blur", ("blur_px",)),
    Perturbation("lamp", "lamp dimming", ("lamp",)),
    Perturbation("glare", "glare", ("glare_probability", "glare_level", "glare_width_mm", "glare_length_mm")),
    Perturbation(
        "background",
        "fixture background: level, unevenness, specks, puddles",
        (
            "background_level",
            "background_unevenness",
            "specks",
            "speck_level",
            "puddles",
            "puddle_level",
            "puddle_size_mm",
        ),
    ),
    Perturbation(
        "film",
        "particle grain, uneven coverage, film level",
        ("surface_level", "coverage", "coverage_cell_px", "grain"),
    ),
    Perturbation(
        "edges",
        "edge build-up: hex edges, fillet, thread roots",
        ("corner_shade", "hex_edge", "fillet", "fillet_mm", "thread_root", "thread_sharpness"),
    ),
    Perturbation(
        "deposits",
        "bright harmless deposits",
        ("deposits", "deposit_level", "deposit_streak_fraction", "deposit_streak_width_mm"),
    ),
    Perturbation(
        "indications",
        "faint and varied indications, sub-threshold ones",
        (
            "contrast",
            "length_mm",
            "width_px",
            "shapes",
            "fillet_fraction",
            "subthreshold_good",
            "subthreshold_defective",
        ),
    ),
)


def variant(p: Perturbation) -> Conditions:
    """SEED with this one group of PLANT's ranges."""
    changes: dict[str, Any] = {f: getattr(PLANT, f) for f in p.fields}
    return dataclasses.replace(SEED, name=f"seed+{p.key}", **changes)


@dataclass(frozen=True)
class RenderSet:
    key: str  # its folder under the work dir and its name in the card
    profile: str
    seed: int
    parts: int
    conditions: Conditions
    jobs: tuple[tuple[str, str], ...]  # (model, mode) to judge it with: ("int8", "parts")
    defect_rate: float = DEFECT_RATE


def plan_sets(sizes: Sizes) -> list[RenderSet]:
    both = tuple((m, mode) for m in ("fp32", "int8") for mode in ("images", "parts"))
    sets = [RenderSet(f"heldout-{p}", p, HELDOUT_SEEDS[p], sizes.heldout, DEFAULT, both) for p in PROFILES]
    sets.append(
        RenderSet(
            "seed", SMALL_SETS_PROFILE, SEED_RENDERS_SEED, sizes.seed, OTHER, (("int8", "images"), ("int8", "parts"))
        )
    )
    sets += [
        RenderSet(
            f"perturbation-{p.key}",
            SMALL_SETS_PROFILE,
            PERTURBATION_SEED,
            sizes.perturbation,
            variant(p),
            (("int8", "parts"),),
        )
        for p in PERTURBATIONS
    ]
    return sets


# --------------------------------------------------------------------------- the brightness rule
@dataclass(frozen=True)
class Rendered:
    """One rendered part, as the rule sees it."""

    part_id: str
    defective: bool  # the part's truth
    # per image: (kind, its label in the images layout or None if left out, the rule over the
    # area that label covers: from the head's top over one head tile, the strip's shank)
    images: tuple[tuple[str, bool | None, float], ...]
    part_rule: float  # the rule over the whole part, every view: what the part-level rule sees


def rule_on_shots(shots: Shots, rp: ResolvedProfile, labels: Sequence[bool | None]) -> Rendered:
    """The largest green value inside the part (sim/baseline.py), per image and per part, on
    the pixels as delivered; the part's region from the render, with baseline's margin."""
    p = rp.profile
    images: list[tuple[str, bool | None, float]] = []
    whole: list[float] = []
    for k, ((data, fmt), render) in enumerate(zip(shots.heads, shots.head_renders, strict=True)):
        x0, y0, x1, y1 = part_region(render)
        whole.append(max_green_rule(data[y0:y1, x0:x1], fmt))
        tiled_end = min(y1, render.part_box[1] + p.preprocess.head_tile_px)
        images.append(("head", labels[k], max_green_rule(data[y0:tiled_end, x0:x1], fmt)))
    data, fmt = shots.strip
    render = shots.strip_render
    margin = round(MARGIN_MM * p.optics.line_px_per_mm)
    head0, _, end, _ = render.part_box
    last = min(end + margin, data.shape[1])
    whole.append(max_green_rule(data[:, max(head0 - margin, 0) : last], fmt))
    images.append(("shank", labels[-1], max_green_rule(data[:, int(render.datum_px) : last], fmt)))
    return Rendered(shots.part.part_id, shots.part.defective, tuple(images), max(whole))


def rule_figures(rendered: Sequence[Rendered]) -> dict[str, Any]:
    """The rule at its best threshold per image kind (each camera its own) and per part (one
    threshold on the part's brightest view)."""
    out: dict[str, Any] = {}
    for kind in ("head", "shank"):
        pairs = [(v, lab) for r in rendered for k, lab, v in r.images if k == kind and lab is not None]
        out[kind] = _rule(best_threshold([v for v, _ in pairs], [lab for _, lab in pairs]))
    out["part"] = _rule(best_threshold([r.part_rule for r in rendered], [r.defective for r in rendered]))
    return out


def _rule(r: RuleScore) -> dict[str, Any]:
    n = r.defective + r.good
    return {
        # "defect" when the rule's value >= threshold; None: never (every view called good)
        "threshold": r.threshold if math.isfinite(r.threshold) else None,
        "n": n,
        "good": r.good,
        "defective": r.defective,
        "escapes": r.escapes,
        "false_rejects": r.false_rejects,
        "accuracy": _rate(n - r.escapes - r.false_rejects, n),
        "escape_rate": _rate(r.escapes, r.defective),
        "false_reject_rate": _rate(r.false_rejects, r.good),
    }


def _rate(count: int, of: int) -> float | None:
    return round(count / of, 4) if of else None


# --------------------------------------------------------------------------- worker processes
@dataclass(frozen=True)
class Task:
    """Parts start..stop of a set: render them, judge them with each of the set's jobs."""

    set: RenderSet
    start: int
    stop: int
    models: tuple[tuple[str, Path], ...]  # ("int8", path)
    export: Path | None  # also write them as `cellctl sim --export` does, here


@dataclass(frozen=True)
class Done:
    counts: Counter[str]  # as `cellctl sim --export` counts what it writes
    rendered: list[Rendered]
    judged: dict[tuple[str, str], list[Judged]]  # per (model, mode), views dropped


_worker: dict[str, Any] = {}


def _init_worker() -> None:
    # Ctrl-C is the parent's to handle: it cancels what is queued
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2

    cv2.setNumThreads(1)  # two workers on two cores: no thread pools fighting inside them


def _profile(name: str) -> ResolvedProfile:
    cache: dict[str, ResolvedProfile] = _worker.setdefault("profiles", {})
    if name not in cache:
        cache[name] = find_profile(name, None, verify_model=False)[0]  # the model is given apart
    return cache[name]


def _model(path: Path, rp: ResolvedProfile) -> OnnxInferencer:
    cache: dict[Path, OnnxInferencer] = _worker.setdefault("models", {})
    if path not in cache:  # one thread: the other core runs the other worker
        cache[path] = OnnxInferencer(path, file_sha256(path), 1, input_size_px=rp.profile.preprocess.input_size_px)
    return cache[path]


def _renderer(seed: int) -> Renderer:
    cache: dict[int, Renderer] = _worker.setdefault("renderers", {})
    if seed not in cache:
        cache.clear()  # one at a time: a renderer holds a full frame of sensor noise
        cache[seed] = Renderer(seed)
    return cache[seed]


def _measure(task: Task) -> Done:
    """Render the parts as ``cellctl sim --export`` does (the stream of parts is drawn from its
    start: part i is the same whichever worker renders it) and judge them as ``cellctl eval``
    judges the export, on the same pixels (PNG is lossless) without the round trip to disk."""
    s = task.set
    rp = _profile(s.profile)
    models = dict(task.models)
    done = Done(Counter(), [], {job: [] for job in s.jobs})
    for part in islice(sample_parts(rp, s.seed, s.parts, s.defect_rate, s.conditions), task.start, task.stop):
        shots = shoot(_renderer(s.seed), rp, part)
        if task.export is not None:
            done.counts.update(export_shots(task.export, rp, shots))
        labels = [head_label(shots, k, rp) for k in range(len(shots.heads))] + [strip_label(shots, rp)]
        if task.export is None:
            done.counts.update(export_counts(shots, rp, labels))
        done.rendered.append(rule_on_shots(shots, rp, labels))
        for model_name, mode in s.jobs:
            model = _model(models[model_name], rp)
            done.judged[model_name, mode] += judge_shots(shots, labels, rp, model, mode)
    return done


def export_counts(shots: Shots, rp: ResolvedProfile, labels: Sequence[bool | None]) -> Counter[str]:
    """What ``export_shots`` would count for this part, without writing it."""
    truth = "defect" if shots.part.defective else "good"
    counts = Counter({f"{PARTS}/{truth}": 1})
    if len(shots.part.indications) > sum(shots.part.relevant()):
        counts[f"{PARTS}/with_subthreshold"] += 1
    for k, label in enumerate(labels):
        kind = "head" if k < len(labels) - 1 else "shank"
        counts[f"{kind}/{'left_out' if label is None else 'defect' if label else 'good'}"] += 1
    return counts


def judge_shots(
    shots: Shots, labels: Sequence[bool | None], rp: ResolvedProfile, model: Model, mode: str
) -> list[Judged]:
    """One part through the decision path as ``cellctl eval`` puts its exported files through
    it: per image (each labelled head frame and the strip alone, named as in the export) or
    the part whole."""
    part_id = shots.part.part_id
    heads = [Frame(data, fmt) for data, fmt in shots.heads]
    strip = Frame(*shots.strip)
    if mode == "parts":
        truth = "defect" if shots.part.defective else "good"
        return [judged_inspection(f"{PARTS}/{truth}/{part_id}", "part", truth, inspect_part(heads, strip, rp, model))]
    out = []
    angles = rp.profile.head_positions_deg
    for frame, angle, label in zip([*heads, strip], [*angles, 0.0], labels, strict=True):
        if label is None:
            continue  # left out of the images layout: ambiguous
        kind = "head" if frame is not strip else "shank"
        truth = "defect" if label else "good"
        stem = Path(head_file(angle)).stem if kind == "head" else Path(STRIP_FILE).stem
        inspection = inspect_image(frame, kind, rp, model, angle)
        out.append(judged_inspection(f"{kind}/{truth}/{part_id}_{stem}.png", kind, truth, inspection))
    return out


# --------------------------------------------------------------------------- the sets
class Clock:
    """Progress on stderr, each line with the seconds since the start."""

    def __init__(self, name: str = "model_card") -> None:
        self.name = name
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        print(f"{self.name} [{self.elapsed():6.0f} s] {message}", file=sys.stderr, flush=True)


def measure_sets(
    sets: Sequence[RenderSet], models: dict[str, Path], workers: int, clock: Clock, export: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Render and judge every set in ``workers`` processes, in chunks of a few parts. Per set:
    the export counts, the rule's figures, the model's figures per model and mode. With
    ``export``, the renders are also written there, one folder per set."""
    chunks: dict[str, dict[int, Done]] = {s.key: {} for s in sets}
    tasks: dict[str, int] = {}
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    pending: dict[Future[Done], tuple[str, int]] = {}
    results: dict[str, dict[str, Any]] = {}
    total = sum(math.ceil(s.parts / RENDER_CHUNK) for s in sets)
    finished, shown = 0, 0.0
    try:
        for s in sets:
            root = export / s.key if export is not None else None
            starts = range(0, s.parts, RENDER_CHUNK)
            tasks[s.key] = len(starts)
            for k, start in enumerate(starts):
                task = Task(s, start, min(start + RENDER_CHUNK, s.parts), tuple(models.items()), root)
                pending[pool.submit(_measure, task)] = (s.key, k)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                key, k = pending.pop(future)
                chunks[key][k] = future.result()
                finished += 1
                if len(chunks[key]) == tasks[key]:
                    s = next(x for x in sets if x.key == key)
                    results[key] = set_figures(s, [chunks[key][i] for i in sorted(chunks[key])])
                    del chunks[key]
                    clock.say(
                        f"{key}: {s.parts} parts ({s.conditions.name}, seed {s.seed}): {_headlines(results[key])}"
                    )
                if finished / total >= shown + 0.1 or finished == total:
                    shown = finished / total
                    eta = clock.elapsed() / finished * (total - finished)
                    clock.say(f"{finished}/{total} chunks of {RENDER_CHUNK} parts, about {eta:.0f} s to go")
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def set_figures(s: RenderSet, chunks: Sequence[Done]) -> dict[str, Any]:
    rendered = [r for c in chunks for r in c.rendered]
    counts: Counter[str] = Counter()
    figures: dict[str, dict[str, Any]] = {}
    for c in chunks:
        counts.update(c.counts)
    for model, mode in s.jobs:
        judged = [j for c in chunks for j in c.judged[model, mode]]
        figures.setdefault(model, {})[mode] = _figures(judged, mode)
    return {
        **figures,
        "exported": dict(sorted(counts.items())),
        "rule": rule_figures(rendered),
    }


def _headlines(result: dict[str, Any]) -> str:
    out = []
    for model in ("fp32", "int8"):
        for mode, figures in result.get(model, {}).items():
            t = figures.get("total") or figures["part"]
            out.append(
                f"{model} {mode} n {t['n']} accuracy {_pct(t['accuracy'])} escapes {t['escapes']} "
                f"false rejects {t['false_rejects']} rechecks {t['rechecks']}"
            )
    return "; ".join(out)


def _figures(judged: Sequence[Judged], mode: str) -> dict[str, Any]:
    """`cellctl eval`'s figures (evaluation.tally) per kind, with only the commonest recheck causes."""
    kinds = ("head", "shank") if mode == "images" else ("part",)
    out = {k: _trim(tally(j for j in judged if j.kind == k)) for k in kinds}
    if mode == "images":
        out["total"] = _trim(tally(judged))
    return out


def _trim(t: dict[str, Any]) -> dict[str, Any]:
    reasons = t["recheck_reasons"]
    return {**t, "recheck_reasons": dict(list(reasons.items())[:TOP_REASONS]), "recheck_patterns": len(reasons)}


# --------------------------------------------------------------------------- the cell and POD
def sim_config(work: Path, int8: Path) -> Path | None:
    """The cell config the simulated cell and POD run: the embedded one when its profiles run
    ``int8`` already, else a copy whose profiles name ``int8`` (path and sha256)."""
    embedded = embedded_config()
    sha = file_sha256(int8)
    shipped = [find_profile(p, None, verify_model=False)[0] for p in PROFILES]
    if all(rp.model_path == int8.resolve() and rp.profile.model.sha256 == sha for rp in shipped):
        return None
    folder = work / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / embedded.name).write_text(embedded.read_text())
    for rp in shipped:
        data = yaml.safe_load(rp.path.read_text())
        data["model"] = {**data["model"], "path": str(int8.resolve()), "sha256": sha}
        (folder / rp.path.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / embedded.name


def _cellctl(args: Sequence[str], log: Path | None) -> tuple[int, str, str]:
    """``python -m cellctl ARGS``: (exit code, stdout, the command line). stderr to ``log``
    (the cell's warnings), or through to ours (POD's progress)."""
    cmd = [sys.executable, "-m", "cellctl", "--log-level", "warning", *args]
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(log.open("w")) if log is not None else None
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    return done.returncode, done.stdout, shlex.join(["cellctl", *args])


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return None


def run_sim(work: Path, parts: int, config: Path | None, clock: Clock) -> dict[str, Any]:
    """``cellctl sim --json`` per profile; the part-level rates over both."""
    out: dict[str, Any] = {"seed": SIM_SEED, "parts_per_profile": parts, "defect_rate": SIM_DEFECT_RATE, "profiles": {}}
    for name in PROFILES:
        args = ["sim", "--parts", str(parts), "--seed", str(SIM_SEED), "--defect-rate", str(SIM_DEFECT_RATE)]
        args += ["--profile", name, "--json", *(["--config", str(config)] if config else [])]
        log = work / f"sim-{name}.log"
        code, stdout, command = _cellctl(args, log)
        summary = _last_json(stdout)
        if summary is None:
            tail = " | ".join(log.read_text().strip().splitlines()[-3:])
            out["profiles"][name] = {"error": f"`{command}` exited {code} without a summary: {tail}"}
            clock.say(f"sim {name}: FAILED ({out['profiles'][name]['error']})")
            continue
        summary["exit_code"] = code
        out["profiles"][name] = summary
        clock.say(
            f"sim {name}: {summary['parts']} parts, verdicts {summary['verdicts']}, escapes {summary['escapes']}, "
            f"false rejects {summary['false_rejects']}, exit {code}"
        )
    runs = [r for r in out["profiles"].values() if "error" not in r]
    defective = sum(r["defective"] for r in runs)
    good = sum(r["parts"] - r["defective"] for r in runs)
    # read by tests/system/test_sim_cell.py: the cell's part-level rates over both profiles
    out["escape_rate"] = sum(r["escapes"] for r in runs) / defective if defective else None
    out["false_reject_rate"] = sum(r["false_rejects"] for r in runs) / good if good else None
    out["recheck_rate"] = sum(r["rechecks"] for r in runs) / (good + defective) if runs else None
    return out


def run_pod(out_dir: Path, parts: int, config: Path | None, clock: Clock) -> dict[str, Any]:
    """``cellctl pod --json --plot`` on the small sets' profile; its report, the plot's file name."""
    plot = out_dir / f"pod-{SMALL_SETS_PROFILE}.png"
    args = ["pod", "--profile", SMALL_SETS_PROFILE, "--parts", str(parts), "--seed", str(POD_SEED)]
    args += ["--json", "--plot", str(plot), *(["--config", str(config)] if config else [])]
    code, stdout, command = _cellctl(args, None)
    command = command.replace(shlex.quote(str(plot)), plot.name)  # the card's folder, not this machine's path
    report = _last_json(stdout)
    if report is None or code != 0:
        clock.say(f"pod: FAILED (`{command}` exited {code})")
        return {"error": f"`{command}` exited {code}", "command": command}
    report["plot"] = plot.name
    report["command"] = command
    fc = report["false_calls"]
    clock.say(f"pod: {report['parts']} good parts, {fc['false_calls']} false calls, {fc['rechecks']} RECHECK")
    return report


# --------------------------------------------------------------------------- the model files
def model_facts(path: Path) -> dict[str, Any]:
    """The file, its graph's interface, its guard's metadata (cellctl.ood.*)."""
    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    guard = {k.removeprefix(ood.META_PREFIX): _number(v) for k, v in meta.items() if k.startswith(ood.META_PREFIX)}
    quantized = any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    # the weights: float initializers of the FP32 model, int8 ones of the INT8 model (whose
    # float initializers are scales); the guard's mean and whitening are not weights
    kind = onnx.TensorProto.INT8 if quantized else onnx.TensorProto.FLOAT
    weights = sum(
        int(np.prod(t.dims))
        for t in proto.graph.initializer
        if t.data_type == kind and not t.name.startswith(GUARD_PREFIX)
    )
    return {
        "file": path.name,
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "inputs": [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}],
        "outputs": [o.name for o in proto.graph.output],
        "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "weights": weights,
        "quantized": quantized,
        "guard": guard,
    }


def _number(text: str) -> Any:
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


def check_models(fp32: Path, int8: Path) -> dict[str, float]:
    """Each model loads as the daemon loads it (guard included); its OOD threshold.
    DriverInitError / OSError with one line if not."""
    thresholds = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        model = OnnxInferencer(path, file_sha256(path), 1)
        thresholds[name] = float(model.ood_threshold or math.nan)
    return thresholds


# the model package's records (`cellctl train`), copied beside the default model as written
PACKAGE_CARD, PACKAGE_TRAIN, PACKAGE_SPLIT = "package-card.json", "package-train.json", "package-split.json"
# the same run with teachers, measured beside the default (cellctl.sim.distillation)
DISTILLED = "distilled.json"


def distillation_summary(models_dir: Path) -> dict[str, Any] | None:
    """The record of the student alone against distilled, and the default package's figures it
    is read beside; None when either is missing."""
    record, default = models_dir / DISTILLED, models_dir / PACKAGE_CARD
    if not record.is_file() or not default.is_file():
        return None
    card = json.loads(default.read_text())
    keep = ("student", "heldout", "heldout_parts", "timings")
    return {"record": json.loads(record.read_text()), "default": {k: card[k] for k in keep if k in card}}


def train_summary(models_dir: Path) -> dict[str, Any] | None:
    """What the factory recorded of the run that made the model: the model package's card.json
    and train.json, kept beside the default model as ``cellctl train`` wrote them."""
    card_path, train_path = models_dir / PACKAGE_CARD, models_dir / PACKAGE_TRAIN
    if not card_path.is_file() or not train_path.is_file():
        return None
    card, train = json.loads(card_path.read_text()), json.loads(train_path.read_text())
    student, split, data = card["student"], card["split"], card["data"]
    options = train["student"]
    return {
        "file": f"{PACKAGE_CARD}, {PACKAGE_TRAIN}",
        "data": [f"{f['profile']}: {Path(f['dir']).name}" for f in data["folders"]],
        "items": data["items"],
        "tiles": data["tiles"],
        "masks": f"{data['masked']['located_by_mask']} of {data['masked']['defective_items']} defective items located",
        "split_parts": " / ".join(f"{side} {split[side]['parts']}" for side in ("train", "val", "heldout")),
        "student": student["arch"],
        "epochs": f"{student['epochs_run']} of {student['epochs_planned']} (stopped by {student['stopped_by']}), "
        f"epoch {student['best_epoch']} kept (lowest validation loss)",
        "lr": options["lr"],
        "balance": f"{options['balance']}, {options['negatives_per_positive']:g} good per defective",
        "augment": options["augment"],
        "teachers": ", ".join(t["arch"] for t in card["teachers"]) or "none",
        "seed": options["seed"],
        "int8_kept_float": card["int8_quantization"]["kept_float"] or "nothing",
        "training_s": card["timings"]["total_s"],
        "machine": f"{card['machine']['cpu']}, {card['machine']['cores']} cores",
        "torch": train["versions"]["torch"],
    }


# --------------------------------------------------------------------------- the card
def build_card(args: argparse.Namespace, sizes: Sizes, clock: Clock) -> dict[str, Any]:
    models = {"fp32": args.fp32.resolve(), "int8": args.int8.resolve()}
    card: dict[str, Any] = {
        "generated_by": shlex.join(["python", "-m", "cellctl.sim.model_card", *sys.argv[1:]]),
        "quick": args.quick,
        "sizes": sizes.as_dict(),
        "machine": describe(),
        "models": {name: model_facts(path) for name, path in models.items()},
        "train": train_summary(MODELS),
        "distillation": distillation_summary(MODELS),
    }
    seconds: dict[str, float] = {}
    with _work_dir(args.work) as work:
        t = clock.elapsed()
        sets = plan_sets(sizes)
        clock.say(f"{len(sets)} render sets, {sum(s.parts for s in sets)} parts, {args.workers} workers")
        measured = measure_sets(sets, models, args.workers, clock, args.work)
        seconds["renders_and_judgements"] = round(clock.elapsed() - t, 1)
        card["heldout"] = {
            "conditions": DEFAULT.name,
            "defect_rate": DEFECT_RATE,
            "profiles": {
                p: {"seed": HELDOUT_SEEDS[p], "parts": sizes.heldout, **measured[f"heldout-{p}"]} for p in PROFILES
            },
        }
        card["seed_renders"] = {
            "conditions": OTHER.name,
            "profile": SMALL_SETS_PROFILE,
            "seed": SEED_RENDERS_SEED,
            "parts": sizes.seed,
            "defect_rate": DEFECT_RATE,
            **measured["seed"],
        }
        card["perturbations"] = {
            "base": SEED.name,
            "from": PLANT.name,
            "profile": SMALL_SETS_PROFILE,
            "seed": PERTURBATION_SEED,
            "parts": sizes.perturbation,
            "defect_rate": DEFECT_RATE,
            "model": "int8",
            "sets": {
                p.key: {"title": p.title, "fields": list(p.fields), **measured[f"perturbation-{p.key}"]}
                for p in PERTURBATIONS
            },
        }
        config = sim_config(work, models["int8"])
        t = clock.elapsed()
        card["sim_part_level"] = run_sim(work, sizes.sim, config, clock)
        seconds["sim"] = round(clock.elapsed() - t, 1)
        t = clock.elapsed()
        card["pod"] = run_pod(args.out, sizes.pod, config, clock)
        seconds["pod"] = round(clock.elapsed() - t, 1)
    seconds["total"] = round(clock.elapsed(), 1)
    card["seconds"] = seconds
    return card


@contextlib.contextmanager
def _work_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="cellctl-card-") as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------------- MODEL_CARD.md
def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f} %"


def _of(count: int, rate: float | None) -> str:
    return f"{count} ({_pct(rate)})" if rate is not None else str(count)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _cause(t: dict[str, Any]) -> str:
    reasons = t.get("recheck_reasons") or {}
    if not reasons:
        return ""
    text, n = next(iter(reasons.items()))
    return f"{n} x `{text[:70]}`"


def _row_model(t: dict[str, Any]) -> str:
    return (
        f"{t['n']} ({t['good']} / {t['defective']}) | {_pct(t['accuracy'])} | {_of(t['escapes'], t['escape_rate'])} | "
        f"{_of(t['false_rejects'], t['false_reject_rate'])} | {_of(t['rechecks'], t['recheck_rate'])}"
    )


def render(card: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    int8, fp32 = card["models"]["int8"], card["models"]["fp32"]
    add("# Model card: default student (INT8, with its out-of-distribution guard)")
    add("")
    add(f"Generated by `{card['generated_by']}` from `{CARD_FILE}`: every figure below is measured")
    add('by that run, none typed in. Rebuild steps: README.md, "The default model".')
    if card.get("records_reread_by"):
        add(f"The training and distillation records beside the model were read again by `{card['records_reread_by']}`")
        add("(nothing measured again).")
    if card["quick"]:
        add("")
        add("**QUICK RUN (`--quick`): sets of a few parts, to check the script; these figures mean nothing.**")
    add("")
    add("## Model files")
    add("")
    add("| model | file | bytes | sha256 | weights | inputs | outputs |")
    add("|---|---|---|---|---|---|---|")
    for name, m in (("FP32", fp32), ("INT8", int8)):
        add(
            f"| {name} | {m['file']} | {m['bytes']:,} | `{m['sha256']}` | {m['weights']:,} | "
            f"{', '.join(m['inputs'])} | {', '.join(m['outputs'])} |"
        )
    add("")
    add("`defect_prob` is what the decision reads (threshold: the profile's `decision.threshold`); `ood_score` is")
    add("the guard; `features` the last feature map (Grad-CAM, the guard's input). Weights: the model's float")
    add("(FP32) or int8 (INT8) initializers, the guard's excluded. The INT8 model is `cellctl quantize`'s")
    add("static QDQ quantization of the FP32 one; its calibration set is not recorded in the file.")
    _guard_section(card, add)
    _train_section(card, add)
    _heldout_section(card, add)
    _rule_section(card, add)
    _perturbation_section(card, add)
    _sim_section(card, add)
    _pod_section(card, add)
    d = card.get("distillation")
    distillation_table.section(d and d["default"], d and d["record"], int8["sha256"], add)
    m = card["machine"]
    s = card["seconds"]
    add("")
    add("## Machine")
    add("")
    add(
        f"{m['cpu']}, {m.get('cores', '?')} cores, Python {m['python']}. This run took {s['total']:.0f} s "
        f"(renders and judgements {s['renders_and_judgements']:.0f} s in two processes, simulated cell "
        f"{s['sim']:.0f} s, POD {s['pod']:.0f} s)."
    )
    _limits_section(card, add)
    add("")
    return "\n".join(lines)


def _guard_section(card: dict[str, Any], add: Any) -> None:
    add("")
    add("## The guard")
    add("")
    add("Mahalanobis distance of the pooled last feature map from in-distribution views (cellctl.ood), in the")
    add("model file; a view above the threshold is out of distribution and its part goes to RECHECK. From the")
    add("models' metadata:")
    add("")
    add(
        "| model | threshold | false-alarm rate set for | held-out views above it | fitted on views "
        "| shrinkage | profiles |"
    )
    add("|---|---|---|---|---|---|---|")
    for name in ("fp32", "int8"):
        g = card["models"][name]["guard"]
        n, k = g.get("holdout_views"), g.get("holdout_false_alarms")
        above = f"{k} of {n} ({_pct(k / n if n else None)})" if isinstance(n, int) and isinstance(k, int) else "-"
        add(
            f"| {name.upper()} | {_num(g.get('threshold'), 5)} | {_num(g.get('false_alarm_rate'))} | {above} | "
            f"{_num(g.get('fit_views'))} | {_num(g.get('shrinkage'))} | {g.get('profiles', '-')} |"
        )


def _train_section(card: dict[str, Any], add: Any) -> None:
    add("")
    add("## Training data")
    add("")
    t = card["train"]
    if t is None:
        add(f"No training record (`{PACKAGE_CARD}`, `{PACKAGE_TRAIN}` of `cellctl train`) beside the default model.")
        return
    add("Simulator renders only, no plant images, made by the student factory (`cellctl train`; README.md,")
    add(f'"The default model"). From the model package\'s `card.json` and `train.json`, kept as `{PACKAGE_CARD}`')
    add(f"and `{PACKAGE_TRAIN}`; its own held-out figures are there too:")
    add("")
    add("| key | value |")
    add("|---|---|")
    for key, value in t.items():
        if key != "file":
            shown = ", ".join(map(str, value)) if isinstance(value, list) else json.dumps(value).strip('"')
            add(f"| {key} | {shown} |")


def _heldout_section(card: dict[str, Any], add: Any) -> None:
    h = card["heldout"]
    add("")
    add(f"## Held-out renders ({h['conditions'].upper()} conditions, defect rate {h['defect_rate']:g})")
    add("")
    seeds = ", ".join(f"{p} seed {v['seed']}" for p, v in h["profiles"].items())
    parts = next(iter(h["profiles"].values()))["parts"]
    add(f"{parts} parts per profile ({seeds}): `cellctl sim --export DIR --profile P --parts {parts} --seed S")
    add(f"--defect-rate {h['defect_rate']:g}` writes exactly these; `cellctl eval DIR --profile P [--parts]`")
    add("re-measures them. Per image: each head frame or strip through the decision path alone (label: what the image")
    add("shows over the area the daemon tiles; ambiguous images are left out). Per part: the 4 head frames")
    add("and the strip inspected together, as the daemon does (truth: the part carries an indication at or")
    add("above the profile's minimum length and contrast). Escape = defective judged PASS, false reject =")
    add("good judged REJECT; RECHECK is neither and never counts as correct. n (good / defective).")
    add("")
    add("| profile | model | level | n | accuracy | escapes | false rejects | rechecks | commonest recheck cause |")
    add("|---|---|---|---|---|---|---|---|---|")
    for p, v in h["profiles"].items():
        for model in ("fp32", "int8"):
            rows = [(k, v[model]["images"][k]) for k in ("head", "shank", "total") if k in v[model]["images"]]
            rows.append(("part", v[model]["parts"]["part"]))
            for level, t in rows:
                label = {"total": "all images", "part": "**part**"}.get(level, f"{level} images")
                add(f"| {p} | {model.upper()} | {label} | {_row_model(t)} | {_cause(t)} |")


def _rule_section(card: dict[str, Any], add: Any) -> None:
    add("")
    add("## The brightness rule beside the model")
    add("")
    add('The rule: "defect when the largest green value inside the part reaches a threshold" (sim/baseline.py;')
    add("head images: over the rows the daemon tiles, the strip: over the shank; per part: over every view).")
    add("Its threshold is the **best single one for each set, fitted on that same set** (fewest errors, ties")
    add("to fewer escapes): the rule at its most optimistic, which no fixed rule in a plant would reach. The")
    add("model runs at the profile's fixed threshold and has RECHECK as a third outcome; the rule has not.")
    add("")
    add(
        "| set | level | n | rule threshold | rule accuracy | rule escapes | rule false rejects "
        "| INT8 accuracy | INT8 escapes | INT8 false rejects | INT8 rechecks |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    sets = [(f"{h} held-out ({card['heldout']['conditions']})", v) for h, v in card["heldout"]["profiles"].items()]
    s = card["seed_renders"]
    sets.append((f"{s['profile']} {s['conditions'].upper()} renders (seed {s['seed']})", s))
    for title, v in sets:
        for level, rule_key, model in (
            ("head images", "head", v["int8"]["images"].get("head")),
            ("shank images", "shank", v["int8"]["images"].get("shank")),
            ("**part**", "part", v["int8"]["parts"]["part"]),
        ):
            r = v["rule"][rule_key]
            m = model or {}
            add(
                f"| {title} | {level} | {r['n']} ({r['good']} / {r['defective']}) | {_num(r['threshold'])} | "
                f"{_pct(r['accuracy'])} | {_of(r['escapes'], r['escape_rate'])} | "
                f"{_of(r['false_rejects'], r['false_reject_rate'])} | {_pct(m.get('accuracy'))} | "
                f"{_of(m.get('escapes', 0), m.get('escape_rate'))} | "
                f"{_of(m.get('false_rejects', 0), m.get('false_reject_rate'))} | "
                f"{_of(m.get('rechecks', 0), m.get('recheck_rate'))} |"
            )


def _perturbation_section(card: dict[str, Any], add: Any) -> None:
    p = card["perturbations"]
    add("")
    add("## Each perturbation alone")
    add("")
    add(f"{p['base'].upper()} conditions with exactly one group of {p['from'].upper()}'s ranges switched on")
    add(f"(sim/conditions.py; the fields in the table), {p['parts']} parts each, {p['profile']}, seed {p['seed']},")
    add(f"defect rate {p['defect_rate']:g}, {p['model'].upper()}, per part. For reference: SEED renders (none on)")
    add("and PLANT renders (all on) of the same profile, from their own seeds. Rule: its best threshold")
    add("on each set, as above.")
    add("")
    add(
        "| perturbation | n | accuracy | escapes | false rejects | rechecks | commonest recheck cause | rule accuracy |"
    )
    add("|---|---|---|---|---|---|---|---|")
    # the two ends: the SEED conditions (none on) and the PLANT conditions (all on), whichever
    # of the held-out set (the default conditions) and the other-conditions set each is
    h = card["heldout"]["profiles"].get(p["profile"])
    s = card["seed_renders"]
    ends = [(card["heldout"]["conditions"], h), (s["conditions"], s)]
    none = next((v for c, v in ends if c == "seed" and v is not None), None)
    if none is not None:
        add(
            f"| none (SEED) | {_row_model(none['int8']['parts']['part'])} | {_cause(none['int8']['parts']['part'])} | "
            f"{_pct(none['rule']['part']['accuracy'])} |"
        )
    for v in p["sets"].values():
        t = v["int8"]["parts"]["part"]
        fields = ", ".join(f"`{f}`" for f in v["fields"])
        add(f"| {v['title']} ({fields}) | {_row_model(t)} | {_cause(t)} | {_pct(v['rule']['part']['accuracy'])} |")
    every = next((v for c, v in ends if c == "plant" and v is not None), None)
    if every is not None:
        t = every["int8"]["parts"]["part"]
        add(f"| all (PLANT) | {_row_model(t)} | {_cause(t)} | {_pct(every['rule']['part']['accuracy'])} |")


def _sim_section(card: dict[str, Any], add: Any) -> None:
    s = card["sim_part_level"]
    add("")
    add(
        f"## The simulated cell (`cellctl sim --parts {s['parts_per_profile']} --seed {s['seed']} "
        f"--defect-rate {s['defect_rate']:g} --json`, INT8)"
    )
    add("")
    add("The whole cell: simulated robot, cameras, turntable and light, the daemon's pipeline, guard and")
    add("records. Out of distribution / not located: parts the guard or locate sent to RECHECK.")
    add("")
    add(
        "| profile | parts | defective | PASS | REJECT | RECHECK | escapes | false rejects | out of distribution "
        "| not located | latency p50 / p99 ms | parts/min |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in s["profiles"].items():
        if "error" in r:
            add(f"| {name} | failed: {r['error']} |||||||||||")
            continue
        v = r["verdicts"]
        add(
            f"| {name} | {r['parts']} | {r['defective']} | {v['PASS']} | {v['REJECT']} | {v['RECHECK']} | "
            f"{r['escapes']} | {r['false_rejects']} | {_num(r.get('out_of_distribution_parts'))} | "
            f"{_num(r.get('not_located_parts'))} | {r['latency_ms']['p50']} / {r['latency_ms']['p99']} | "
            f"{r['throughput_per_min']} |"
        )
    add("")
    add(
        f"Over both profiles: escape rate {_pct(s['escape_rate'])} of defective parts, false-reject rate "
        f"{_pct(s['false_reject_rate'])} of good parts, RECHECK {_pct(s['recheck_rate'])} of all parts."
    )


def _pod_section(card: dict[str, Any], add: Any) -> None:
    pod = card["pod"]
    add("")
    add("## Probability of detection (`cellctl pod`)")
    add("")
    if "error" in pod:
        add(f"Not measured: {pod['error']}.")
        return
    add(f"`{pod['command']}`: {pod['parts']} good parts of {pod['profile']} (seed {pod['seed']}), any indication")
    add("they carry removed, each once as it is (false calls) and once per sweep with one injected crack on the")
    add("head or on the shank, judged whole by the daemon's decision path, guard included. Hit = REJECT; a")
    add(f"RECHECK is a miss. Log-logistic hit/miss fit by maximum likelihood (MIL-HDBK-1823A); a90/95: {pod['bound']}.")
    add("")
    add("| kind | sweep | unit | fixed | n | hits | rechecks | a50 | a90 | a90/95 | note |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind, sweeps in pod["sweeps"].items():
        for name, sw in sweeps.items():
            fixed = ", ".join(f"{k} {v:g}" for k, v in sw.get("fixed", {}).items())
            note = sw.get("reason") or "; ".join(f"{k}: {w}" for k, w in (sw.get("why") or {}).items())
            ex = sw.get("excluding_rechecks")
            if sw["rechecks"] and ex:  # what the model finds among the parts the guard let it judge
                note += f"; without the RECHECKs: {ex['hits']} of {ex['n']} hits, a90 {_num(ex.get('a90'))}"
            add(
                f"| {kind} | {name} | {sw['unit']} | {fixed} | {sw['n']} | {sw['hits']} | {sw['rechecks']} | "
                f"{_num(sw['a50'])} | {_num(sw['a90'])} | {_num(sw['a90_95'])} | {note.strip('; ')[:160]} |"
            )
    fc = pod["false_calls"]
    add("")
    add(
        f"False calls: {fc['false_calls']} of {fc['n']} good parts REJECTed ({_pct(fc['rate'])}, 95 % upper "
        f"bound {_pct(fc['upper95'])}); {fc['rechecks']} went to RECHECK ({_pct(fc['recheck_rate'])})."
    )
    add("")
    add(f"![POD curves]({pod['plot']})")


def _limits_section(card: dict[str, Any], add: Any) -> None:
    add("")
    add("## Limits: what these figures do not show")
    add("")
    for line in (
        "- **Simulator renders only, one renderer.** Training, held-out, perturbations, the cell and POD all come",
        "  from sim/scene.py. The figures say the pipeline works end to end and how the model does on *this*",
        "  simulator's images, not on real parts: validate on labelled plant images with `cellctl eval` before",
        "  deployment. A real defect or nuisance the renderer cannot draw is not covered at all.",
        "- **Held-out means other seeds, not other conditions.** The held-out sets are drawn from the same",
        "  ranges the student was trained on; a plant outside them (another bath, lamp, fixture) is what the",
        "  guard is for, and its false-alarm rate above is measured on in-distribution views only.",
        "- **The rule's threshold is fitted in-sample**, on the set it is scored on: its figures are an upper",
        "  bound for any fixed brightness rule; the model's threshold is fixed.",
        "- **RECHECK costs.** It is never an escape, but each one is a part a person must look at; a model",
        "  that sends most parts to RECHECK has few escapes and no use. Read escapes, false rejects and",
        "  rechecks together.",
        "- **POD is of indications injected into good parts of this simulator**, one straight crack at a time,",
        "  at the sweep's fixed length or contrast; real cracks vary in shape, width and place.",
        f"- **Sample sizes.** {card['sizes']['heldout']} held-out parts per profile, "
        f"{card['sizes']['perturbation']} per perturbation: a",
        "  rate of 0 of n only says the true rate is likely below about 3/n.",
        "- Latency and throughput are of this machine, with other work on it; the daemon's own figures are in",
        "  `cellctl bench`.",
    ):
        add(line)


# --------------------------------------------------------------------------- command line
def _sizes(sizes: Sizes) -> str:
    return ", ".join(f"{k} {v}" for k, v in sizes.as_dict().items())


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Sizes]:
    ap = argparse.ArgumentParser(
        prog="python -m cellctl.sim.model_card",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    ap.add_argument("--parts", type=int, default=None, help=f"held-out parts per profile (default {FULL.heldout})")
    ap.add_argument("--seed-parts", type=int, default=None, help=f"SEED renders (default {FULL.seed})")
    ap.add_argument(
        "--perturbation-parts", type=int, default=None, help=f"parts per perturbation (default {FULL.perturbation})"
    )
    ap.add_argument(
        "--sim-parts", type=int, default=None, help=f"simulated-cell parts per profile (default {FULL.sim})"
    )
    ap.add_argument("--pod-parts", type=int, default=None, help=f"good parts of the POD study (default {FULL.pod})")
    ap.add_argument("--quick", action="store_true", help=f"every set small ({_sizes(QUICK)}): a check, not a card")
    ap.add_argument("--fp32", type=Path, default=MODELS / "student-fp32.onnx", help="FP32 model (guarded)")
    ap.add_argument("--int8", type=Path, default=MODELS / "student-int8.onnx", help="INT8 model (guarded)")
    ap.add_argument("--out", type=Path, default=MODELS, help="where the card, its JSON and the POD plot go")
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="also write every set here as `cellctl sim --export` does (DIR/<set>/, for `cellctl eval`), and the "
        "simulated cell's logs (default: nothing written, a temporary folder for the logs)",
    )
    ap.add_argument("--workers", type=int, default=WORKERS, help=f"processes (default {WORKERS})")
    ap.add_argument(
        "--records-only",
        action="store_true",
        help=f"measure nothing: read OUT/{CARD_FILE} again with the training and distillation records now beside "
        "the model, and rewrite the card (for a record that changed; the measured figures stay as they were)",
    )
    args = ap.parse_args(argv)
    base = QUICK if args.quick else FULL
    given = (args.parts, args.seed_parts, args.perturbation_parts, args.sim_parts, args.pod_parts)
    sizes = Sizes(*(b if g is None else g for g, b in zip(given, dataclasses.astuple(base), strict=True)))
    if min(*dataclasses.astuple(sizes), args.workers) < 1:
        ap.error("every size and --workers must be >= 1")
    return args, sizes


def main(argv: Sequence[str] | None = None) -> int:
    args, sizes = parse(argv)
    clock = Clock()
    try:
        check_models(args.fp32, args.int8)
    except (DriverInitError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.records_only:
        return _records_only(args.out, clock)
    try:
        card = build_card(args, sizes, clock)
    except ConfigError as exc:
        print(f"error: {'; '.join(map(str, exc.problems))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    (args.out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (args.out / CARD_MD).write_text(render(card))
    clock.say(f"wrote {args.out / CARD_FILE} and {args.out / CARD_MD}")
    failed = "error" in card["pod"] or any("error" in r for r in card["sim_part_level"]["profiles"].values())
    return 1 if failed else 0


def _records_only(out: Path, clock: Clock) -> int:
    try:
        card = json.loads((out / CARD_FILE).read_text())
    except (OSError, ValueError) as exc:
        print(f"error: --records-only needs a measured card: {out / CARD_FILE}: {exc}", file=sys.stderr)
        return 2
    card["train"], card["distillation"] = train_summary(MODELS), distillation_summary(MODELS)
    card["records_reread_by"] = "python -m cellctl.sim.model_card --records-only"
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (out / CARD_MD).write_text(render(card))
    clock.say(f"rewrote {out / CARD_FILE} and {out / CARD_MD} with the records beside the model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
