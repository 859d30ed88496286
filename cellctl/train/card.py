"""MODEL_CARD.md of a model package, written from its card.json: nothing here is typed in by
hand, every figure is one the run measured."""

from __future__ import annotations

from typing import Any

from cellctl.keep_float import describe


def markdown(card: dict[str, Any]) -> str:
    s = card["student"]
    lines = [
        "# Model card",
        "",
        f"Written by `cellctl train` on {card['created_utc']}; every figure below is measured "
        "(card.json holds them all).",
        "",
        "## Data",
        "",
        f"{card['data']['items']} labelled items from "
        + ", ".join(f"`{f['dir']}` ({f['profile']})" for f in card["data"]["folders"])
        + f"; {card['data']['tiled']} tiled into {card['data']['tiles']} views by the daemon's locate-and-tile code"
        + (f", {len(card['data']['left_out'])} left out (no view)." if card["data"]["left_out"] else "."),
        "",
        _masked_line(card["data"]["masked"]),
        "",
        "| split | parts | items | defective items |",
        "|---|---|---|---|",
        *(f"| {side} | {v['parts']} | {v['items']} | {v['defect_items']} |" for side, v in card["split"].items()),
        "",
        "Split by part (no part on two sides), stratified by defective parts; seeded (split.json).",
        "",
        "## Networks",
        "",
        "| network | parameters | epochs run | training time (s) | best epoch (val loss) | stopped by |",
        "|---|---|---|---|---|---|",
        _net_row("student " + s["arch"], s),
        *(_net_row("teacher " + t["arch"], t) for t in card["teachers"]),
        "",
    ]
    if card.get("distillation"):
        d = card["distillation"]
        lines += [
            f"The student was distilled from {', '.join(s['distilled_from'])}: alpha {d['alpha']} (weight of the "
            f"hard-label loss), temperature {d['temperature']}, {d['mode']}.",
            "",
        ]
    lines += ["## Held-out split, through the daemon's decision path", ""]
    parts = card.get("heldout_parts", {})  # each part's items together, as the gate judges
    for model, by_profile in card["heldout"].items():
        for profile, by_kind in by_profile.items():
            whole = parts.get(model, {}).get(profile, {}).get("part")
            kinds = {**by_kind, **({"whole parts": whole} if whole else {})}
            lines += [
                f"**{model.upper()}**, profile {profile}:",
                "",
                "| kind | n | defective | escapes | false rejects | rechecks | accuracy |",
                "|---|---|---|---|---|---|---|",
                *(
                    f"| {k} | {t['n']} | {t['defective']} | {t['escapes']} | {t['false_rejects']} | {t['rechecks']} | "
                    f"{t['accuracy']} |"
                    for k, t in kinds.items()
                ),
                "",
            ]
    alone = [("Student " + s["arch"], s["heldout_torch"])] if card["teachers"] and "heldout_torch" in s else []
    for name, figures in alone + [("Teacher " + t["arch"], t["heldout"]) for t in card["teachers"]]:
        rows = [
            f"| {k} | {v['n']} | {v['defective']} | {v['escapes']} | {v['false_rejects']} |" for k, v in figures.items()
        ]
        lines += [
            f"{name} in torch at 0.5, no guard, same held-out items:",
            "",
            "| kind | n | defective | escapes | false rejects |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    c = card["int8_vs_fp32"]
    lines += [
        f"INT8 quantization: {describe(card['int8_quantization'])}.",
        "",
        f"INT8 against FP32 on the held-out split: {c['items_differing']} of {c['items']} items and "
        f"{c['views_differing']} of {c['views']} views decided otherwise.",
        "",
        "## Guard",
        "",
    ]
    for model, g in card["guard"].items():
        v = g["val"]
        lines.append(
            f"- {model.upper()}: threshold {g['threshold']:.4g} for a false-alarm rate of "
            f"{g['false_alarm_rate']:g} per view, "
            f"fitted on {g['fit']['views']} train views, {v['false_alarms']} of {v['views']} val views above it."
        )
    m = card["models"]
    lines += [
        "",
        "## Files",
        "",
        *(f"- `{v['file']}`: sha256 `{v['sha256']}`, {v['bytes'] / 1e6:.1f} MB" for v in m.values()),
        "",
        "## What these figures do not show",
        "",
        "- They hold for parts like the held-out ones: the same profiles, plant, lamp and bath. The held-out parts"
        " come from the same folders as the training parts.",
        "- A few hundred held-out items bound a rate only loosely: 0 escapes in n defective items means a rate below"
        " 3/n at 95 % confidence, not zero.",
        "",
        "## Run",
        "",
        f"{card['machine']['cpu']}, {card['machine']['cores']} cores; "
        + ", ".join(f"{k} {v}" for k, v in card["versions"].items())
        + ".",
        "",
        ("Timings of the run that wrote the package, resumed (s): " if card["resumed"] else "Timings (s): ")
        + ", ".join(f"{k.removesuffix('_s')} {v}" for k, v in card["timings"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def _net_row(name: str, n: dict[str, Any]) -> str:
    runs = f"{n['epochs_run']} of {n['epochs_planned']}"
    return (
        f"| {name} | {n['parameters'] / 1e6:.1f} M | {runs} | {n['epochs_s']} | {n['best_epoch']} | {n['stopped_by']} |"
    )


def _masked_line(m: dict[str, int]) -> str:
    if not m["located_by_mask"]:
        return "No mask located an indication: defective items were trained by their label alone."
    return (
        f"Masks (DIR/masks/) located the indication in {m['located_by_mask']} of {m['defective_items']} "
        f"defective items: their {m['positive_tiles']} positive tiles were trained one by one, the rest "
        "by the item's label (its highest tile)."
    )
