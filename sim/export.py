"""``cellctl sim --export DIR``: labelled renders in the layout ``cellctl eval`` reads.

DIR/head/{good,defect}/<part>_head<angle>.png are frames as the frame camera delivers them
(one-plane BayerRG8 for the default profiles); DIR/shank/{good,defect}/<part>_strip.png are
the line-scan strips (RGB8). A head view that shows an indication only at a grazing angle is
left out: a label must be unambiguous. A strip is 'defect' when the shank has an indication.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from cellctl.commands.common import find_profile
from cellctl.sim.dataset import iter_parts
from cellctl.vision.images import write_camera_image


def export_parts(
    out: Path, profile_name: str, config: Path | None, parts: int, seed: int, defect_rate: float
) -> dict[str, int]:
    rp, _, _ = find_profile(profile_name, config, verify_model=False)  # renders need no model
    counts: Counter[str] = Counter()
    angles = rp.profile.head_positions_deg
    for r in iter_parts(rp, seed, parts, defect_rate):
        pid = r.part.part_id
        for view, label in zip(rp.views, r.labels, strict=True):
            if view.kind != "head" or label is None:
                continue
            data, fmt = r.head_frames[view.source]
            sub = "defect" if label else "good"
            write_camera_image(out / "head" / sub / f"{pid}_head{angles[view.source]:g}.png", data, fmt)
            counts[f"head/{sub}"] += 1
        sub = "defect" if any(i.region == "shank" for i in r.part.indications) else "good"
        write_camera_image(out / "shank" / sub / f"{pid}_strip.png", *r.strip_frame)
        counts[f"shank/{sub}"] += 1
    return dict(sorted(counts.items()))


def export(args: argparse.Namespace) -> dict[str, int]:
    profile = args.profile or "m8x40-hex"
    return export_parts(args.export, profile, args.config, args.parts, args.seed, args.defect_rate)
