"""Student alone against distilled, beside the teachers: what the default model's card shows of
distillation (issue 9, item 3), measured.

    python -m cellctl.sim.distillation PACKAGE [--pod-parts N] [--plant-parts N]

PACKAGE is the default model's training run again with teachers added: ``cellctl train
PACKAGE`` on the same folders with the same student options and seed, plus ``--teachers``
(README "Student alone against distilled"). This checks that it is that run (same folders,
same student options, every part on the same side of the split: both students are measured on
the same held-out parts) and refuses otherwise, then measures both students' INT8 models the
same way, one after the other in this process:

- ``cellctl pod`` on m8x40-hex with the default card's good parts and seed;
- ``cellctl eval --parts`` on ``PLANT`` renders of a seed neither saw (the harder simulator of
  issue 8; both students were trained on ``SEED`` renders), per profile.

It writes profiles/models/distilled.json: the package's card and options, the checks, both POD
reports (without their trials) and both PLANT figures. cellctl.sim.model_card shows it as one
table. The distilled student's ONNX files are not committed (one model per issue): the record
keeps their sha256, and the command above remakes them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cellctl.machine import describe
from cellctl.sim.conditions import PLANT
from cellctl.sim.model_card import (
    DISTILLED,
    MODELS,
    PACKAGE_CARD,
    PACKAGE_SPLIT,
    PACKAGE_TRAIN,
    POD_SEED,
    PROFILES,
    SMALL_SETS_PROFILE,
    Clock,
    _cellctl,
    _last_json,
    sim_config,
)

PLANT_SEEDS = {"m8x40-hex": 7011, "m12x80-hex": 7012}  # no other set uses these
PLANT_DEFECT_RATE = 0.3
POD_PARTS = 60  # the default card's (README "The default model")
# what may differ between the two runs: the teachers, and what a rerun cannot hold equal
MAY_DIFFER = {"teachers", "teacher_epochs", "versions", "budget_s"}


class NotTheSameRun(Exception):
    """PACKAGE is not the default model's run with teachers: one line says where it differs."""


def same_run(
    default_train: dict[str, Any], default_split: dict[str, Any], train: dict[str, Any], split: dict[str, Any]
) -> dict[str, Any]:
    """What the two runs share, checked; NotTheSameRun names the first difference."""
    if not train.get("teachers"):
        raise NotTheSameRun("the package has no teachers (cellctl train --teachers ...)")
    for key in sorted(set(default_train) | set(train)):
        if key in MAY_DIFFER:
            continue
        mine, theirs = default_train.get(key), train.get(key)
        if key == "data":  # the folders by name: the runs may sit in different directories
            mine = [(d["profile"], Path(d["dir"]).name) for d in mine or []]
            theirs = [(d["profile"], Path(d["dir"]).name) for d in theirs or []]
        if mine != theirs:
            raise NotTheSameRun(f"train.json {key!r} differs: the default's {mine!r}, the package's {theirs!r}")
    sides, theirs = default_split["parts"], split["parts"]
    if sides != theirs:
        moved = sorted(p for p in set(sides) | set(theirs) if sides.get(p) != theirs.get(p))
        raise NotTheSameRun(f"split.json: {len(moved)} parts on another side (first {moved[0]})")
    return {"data": len(train["data"]), "student_options": "identical", "parts_on_the_same_side": len(sides)}


def pod_summary(report: dict[str, Any]) -> dict[str, Any]:
    """A ``cellctl pod --json`` report without its trials: the figures a table needs."""
    keep = ("n", "hits", "rechecks", "a50", "a90", "a90_95", "unit", "fixed", "reason")
    return {
        "parts": report["parts"],
        "seed": report["seed"],
        "model": report["model"],
        "sweeps": {
            kind: {name: {k: sw.get(k) for k in keep} for name, sw in sweeps.items()}
            for kind, sweeps in report["sweeps"].items()
        },
        "false_calls": report["false_calls"],
    }


def _configs(work: Path, models: dict[str, Path]) -> dict[str, Path | None]:
    out = {}
    for student, int8 in models.items():
        folder = work / student
        folder.mkdir()
        out[student] = sim_config(folder, int8)
    return out


def measure_pod(models: dict[str, Path], configs: dict[str, Path | None], parts: int, clock: Clock) -> dict[str, Any]:
    out = {}
    for student in models:
        args = ["pod", "--profile", SMALL_SETS_PROFILE, "--parts", str(parts), "--seed", str(POD_SEED), "--json"]
        config = configs[student]
        code, stdout, command = _cellctl([*args, *(["--config", str(config)] if config else [])], None)
        report = _last_json(stdout)
        if code != 0 or report is None:
            raise RuntimeError(f"`{command}` exited {code}")
        out[student] = pod_summary(report) | {"command": shlex.join(["cellctl", *args])}
        clock.say(f"pod {student}: {report['false_calls']['false_calls']} false calls of {report['parts']}")
    return out


def measure_plant(models: dict[str, Path], work: Path, parts: int, clock: Clock) -> dict[str, Any]:
    out: dict[str, Any] = {"conditions": PLANT.name, "defect_rate": PLANT_DEFECT_RATE, "parts": parts, "profiles": {}}
    for profile in PROFILES:
        folder, seed = work / f"plant-{profile}", PLANT_SEEDS[profile]
        export = ["sim", "--export", str(folder), "--profile", profile, "--parts", str(parts), "--seed", str(seed)]
        export += ["--defect-rate", str(PLANT_DEFECT_RATE), "--conditions", PLANT.name]
        code, _, command = _cellctl(export, work / f"export-{profile}.log")
        if code != 0:
            raise RuntimeError(f"`{command}` exited {code}")
        figures: dict[str, Any] = {
            "seed": seed,
            "export": shlex.join(["cellctl", *export]).replace(str(work) + "/", ""),
        }
        for student, int8 in models.items():
            args = ["eval", str(folder), "--profile", profile, "--model", str(int8), "--parts", "--json"]
            code, stdout, command = _cellctl(args, work / f"eval-{profile}-{student}.log")
            report = _last_json(stdout)
            if code != 0 or report is None:
                raise RuntimeError(f"`{command}` exited {code}")
            part = {k: report["part"][k] for k in ("n", "good", "defective", "escapes", "false_rejects", "rechecks")}
            figures[student] = part | {"unreadable": len(report["unreadable"])}
            clock.say(f"plant {profile} {student}: {part}")
        out["profiles"][profile] = figures
    return out


def _package_card(card: dict[str, Any]) -> dict[str, Any]:
    """The distilled package's card without its data, guard and quantization records (the
    networks' histories stay: they say how each trained)."""
    keep = ("created_utc", "split", "student", "teachers", "distillation", "models", "heldout", "heldout_parts")
    return {k: card[k] for k in (*keep, "timings", "int8_vs_fp32") if k in card}


def record(package: Path, pod_parts: int, plant_parts: int, clock: Clock) -> dict[str, Any]:
    def load(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text())

    card, train, split = (load(package / f) for f in ("card.json", "train.json", "split.json"))
    checks = same_run(load(MODELS / PACKAGE_TRAIN), load(MODELS / PACKAGE_SPLIT), train, split)
    models = {"alone": MODELS / "student-int8.onnx", "distilled": package / "student-int8.onnx"}
    with tempfile.TemporaryDirectory(prefix="cellctl-distil-") as tmp:
        work = Path(tmp)
        configs = _configs(work, models)
        pod = measure_pod(models, configs, pod_parts, clock)
        plant = measure_plant(models, work, plant_parts, clock)
    return {
        "generated_by": shlex.join(["python", "-m", "cellctl.sim.distillation", *sys.argv[1:]]),
        "checks": checks,
        "package": _package_card(card),
        "train": train,
        "default": {"int8_sha256": load(MODELS / PACKAGE_CARD)["models"]["int8"]["sha256"]},
        "pod": pod,
        "plant": plant,
        "machine": describe(),
        "seconds": round(clock.elapsed(), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cellctl.sim.distillation", description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path, help="the default model's run with teachers (a cellctl train package)")
    ap.add_argument(
        "--pod-parts", type=int, default=POD_PARTS, help=f"good parts of the POD study (default {POD_PARTS})"
    )
    ap.add_argument("--plant-parts", type=int, default=100, help="PLANT parts per profile (default 100)")
    ap.add_argument("--out", type=Path, default=MODELS, help=f"where {DISTILLED} goes (default profiles/models)")
    args = ap.parse_args(argv)
    if min(args.pod_parts, args.plant_parts) < 1:
        ap.error("--pod-parts and --plant-parts must be >= 1")
    clock = Clock("distillation")
    try:
        result = record(args.package, args.pod_parts, args.plant_parts, clock)
    except NotTheSameRun as exc:
        print(f"error: {args.package} is not the default model's run with teachers: {exc}", file=sys.stderr)
        return 2
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        print(f"error: {args.package}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    (args.out / DISTILLED).write_text(json.dumps(result, indent=1) + "\n")
    clock.say(f"wrote {args.out / DISTILLED} in {time.strftime('%M:%S', time.gmtime(clock.elapsed()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
