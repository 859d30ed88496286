"""The default model's card section "Student alone against distilled" (issue 9, item 3): one
table from the record cellctl.sim.distillation measured (distilled.json) and the default's own
package card, and which student is the better by a stated order, computed, not typed in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KINDS = ("head", "shank")


def _sum(by_profile: dict[str, Any], kind: str) -> dict[str, int] | None:
    """One kind's figures added over the profiles (the teachers are measured per kind only)."""
    found = [p[kind] for p in by_profile.values() if kind in p]  # kind: a view kind, "part" or a student
    if not found:
        return None
    return {k: sum(f.get(k, 0) for f in found) for k in ("n", "defective", "escapes", "false_rejects", "rechecks")}


def _cell(f: dict[str, Any] | None) -> str:
    """escapes / defective, false rejects / good (+ rechecks when there are any)."""
    if not f:
        return "-"
    good = f.get("good", f["n"] - f["defective"])
    text = f"{f['escapes']}/{f['defective']}, {f['false_rejects']}/{good}"
    return text + (f", {f['rechecks']} RECHECK" if f.get("rechecks") else "")


def _parts(card: dict[str, Any], model: str) -> dict[str, int] | None:
    by_profile = card.get("heldout_parts", {}).get(model)
    return _sum(by_profile, "part") if by_profile else None


def _a90(pod: dict[str, Any], sweep: str) -> str:
    """a90 (a90/95) per view kind, head / shank."""

    def num(value: float | None) -> str:
        return "not reached" if value is None else f"{value:.3g}"

    sweeps = [pod["sweeps"].get(kind, {}).get(sweep, {}) for kind in KINDS]
    return " / ".join(f"{num(sw.get('a90'))} ({num(sw.get('a90_95'))})" for sw in sweeps)


def _worst_a9095(pod: dict[str, Any]) -> float:
    """The contrast a90/95 of the weaker view kind; not reached counts as infinitely far."""
    found = [pod["sweeps"].get(k, {}).get("contrast", {}).get("a90_95") for k in KINDS]
    return max(float("inf") if v is None else v for v in found)


def better(default: dict[str, Any], record: dict[str, Any]) -> tuple[str, str]:
    """(student, why): fewer escaped parts (held-out and PLANT) first, then the weaker kind's
    POD contrast a90/95, then false rejects and rechecks of parts: an escape is what an
    inspection answers for, then what it can find, then what it costs."""
    cards = {"alone": default, "distilled": record["package"]}

    def key(student: str) -> tuple[int, float, int]:
        held, plant = _parts(cards[student], "int8") or {}, _sum(record["plant"]["profiles"], student) or {}
        escapes = held.get("escapes", 0) + plant.get("escapes", 0)
        cost = sum(d.get(k, 0) for d in (held, plant) for k in ("false_rejects", "rechecks"))
        return escapes, _worst_a9095(record["pod"][student]), cost

    keys = {s: key(s) for s in ("alone", "distilled")}
    best = min(keys, key=lambda s: keys[s])
    other = "distilled" if best == "alone" else "alone"
    names = ("escaped parts", "POD contrast a90/95 of the weaker kind", "false rejects and rechecks of parts")
    for name, mine, theirs in zip(names, keys[best], keys[other], strict=True):
        if mine != theirs:
            return best, f"{name}: {mine:g} against {theirs:g}"
    return best, "equal on every measure of the order"


def section(
    default: dict[str, Any], record: dict[str, Any] | None, default_sha: str, add: Callable[[str], Any]
) -> None:
    add("")
    add("## Student alone against distilled, beside the teachers")
    add("")
    if record is None:
        add("Not measured: no `distilled.json` beside the model (`python -m cellctl.sim.distillation PACKAGE`).")
        return
    if record["default"]["int8_sha256"] != default_sha:
        add(
            f"`distilled.json` was measured against another default model (INT8 sha256 "
            f"{record['default']['int8_sha256'][:12]}...): measure it again."
        )
        return
    pkg, pod, plant = record["package"], record["pod"], record["plant"]
    teachers = pkg["teachers"]
    add(
        f"The default student (alone) and a student distilled from "
        f"{', '.join(t['arch'] for t in teachers)} by the same factory run otherwise: {record['checks']['data']} "
        f"data folders, student options and seed identical, all {record['checks']['parts_on_the_same_side']} parts "
        f"on the same side of the split (checked by `{record['generated_by']}`, which wrote `distilled.json`). "
        f"Distillation: alpha {pkg['distillation']['alpha']}, temperature {pkg['distillation']['temperature']}, "
        f"{pkg['distillation']['mode']}. Escapes/defective, false rejects/good:"
    )
    add("")
    add(
        "| network | measured by | held-out head images | held-out shank images | held-out parts | "
        "PLANT parts | POD a90 (a90/95) contrast, head / shank (grey levels) | POD a90 (a90/95) length, head / shank "
        "(mm) | "
        "POD false calls | training (s, 2 cores) |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    for t in teachers:
        kinds = [t["heldout"].get(k) for k in KINDS]
        add(
            f"| teacher {t['arch']} ({t['parameters'] / 1e6:.1f} M, {t['epochs_run']} epochs) | "
            f"torch at 0.5, no guard | {_cell(kinds[0])} | {_cell(kinds[1])} | - | - | - | - | - | {t['train_s']:.0f} |"
        )
    for student, card in (("alone", default), ("distilled", pkg)):
        s = card["student"]
        name = f"student {s['arch']} {student} ({s['epochs_run']} epochs, epoch {s['best_epoch']} kept)"
        if "heldout_torch" in s:
            kinds = [s["heldout_torch"].get(k) for k in KINDS]
            add(f"| {name} | torch at 0.5, no guard | {_cell(kinds[0])} | {_cell(kinds[1])} | - | - | - | - | - | - |")
        for model in ("fp32", "int8"):
            kinds = [_sum(card["heldout"][model], k) for k in KINDS]
            last = model == "int8"
            p = pod[student]
            fc = p["false_calls"]
            add(
                f"| {name}, {model.upper()} | daemon's decision path | {_cell(kinds[0])} | {_cell(kinds[1])} | "
                f"{_cell(_parts(card, model))} | {_cell(_sum(plant['profiles'], student)) if last else '-'} | "
                f"{_a90(p, 'contrast') if last else '-'} | {_a90(p, 'length') if last else '-'} | "
                f"{str(fc['false_calls']) + '/' + str(fc['n']) if last else '-'} | "
                f"{card['timings']['student_s']:.0f} |"
            )
    best, why = better(default, record)
    add("")
    add(
        f"Held out: the factory's held-out split (the same parts for both). PLANT: "
        f"{plant['parts']} parts per profile of `PLANT` renders, seeds "
        f"{', '.join(str(p['seed']) for p in plant['profiles'].values())}, defect rate {plant['defect_rate']}, judged "
        f"whole by `cellctl eval --parts`. POD: `{pod['alone']['command']}`, each student's INT8. The teachers "
        f"are measured as networks in torch (their highest tile at 0.5, no locate check, no guard), the students "
        f"also through the daemon's decision path; the teachers' training time is on top of the distilled "
        f"student's."
    )
    add("")
    add(
        f"By escaped parts (held-out and PLANT), then POD contrast a90/95 of the weaker view kind, then false "
        f"rejects and rechecks of parts, the better student is the **{best}** one ({why}); the default is the "
        f"student alone." + ("" if best == "alone" else " **The default is not the better student: see README.**")
    )
    add("")
    add(
        "What it does not show: one run of each, one teacher architecture and epoch budget, renders only; a "
        "difference of one or two parts is within what another seed would change. It says how these runs came "
        "out, not whether distillation helps in general (README: the same comparison on `PLANT` training data)."
    )
