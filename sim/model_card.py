"""Measure the default student and write its model card (held-out renders, FP32 and INT8).

    python -m cellctl.sim.model_card

Renders a held-out set per profile (seeds unused by training and calibration), scores it
with `cellctl eval`'s code for the FP32 and the INT8 model, runs the simulated cell for the
part-level figures, and writes profiles/models/student-int8.card.json (read by the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
from pathlib import Path

from cellctl.config import file_sha256, resolve_profile
from cellctl.evaluation import evaluate
from cellctl.inference import OnnxInferencer
from cellctl.sim.export import export_parts
from cellctl.sim.run import simulate

MODELS = Path(__file__).resolve().parent.parent / "profiles" / "models"
HELDOUT_SEED = 202611
SIM_SEED = 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", type=int, default=150, help="held-out parts per profile")
    ap.add_argument("--sim-parts", type=int, default=200)
    args = ap.parse_args()
    card: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
                  "heldout": {}, "sim_part_level": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("m8x40-hex", "m12x80-hex"):
            rp = resolve_profile(MODELS.parent / f"{name}.yaml")
            folder = Path(tmp) / name
            counts = export_parts(folder, name, None, args.parts, HELDOUT_SEED, 0.5)
            card["heldout"][name] = {"images": counts}
            for kind, fname in (("fp32", "student-fp32.onnx"), ("int8", "student-int8.onnx")):
                model = MODELS / fname
                inf = OnnxInferencer(model, file_sha256(model), 2)
                card["heldout"][name][kind] = evaluate(rp, inf.infer, folder)
            sim = asyncio.run(simulate(argparse.Namespace(
                parts=args.sim_parts, seed=SIM_SEED, defect_rate=0.1, profile=name, time_scale=0.0, config=None,
                records=None, json=True), Path(tmp)))
            card["sim_part_level"][name] = sim
    runs = card["sim_part_level"].values()
    defective = sum(r["defective"] for r in runs)
    good = sum(r["parts"] - r["defective"] for r in runs)
    card["sim_part_level"]["escape_rate"] = sum(r["escapes"] for r in runs) / max(defective, 1)
    card["sim_part_level"]["false_reject_rate"] = sum(r["false_rejects"] for r in runs) / max(good, 1)
    (MODELS / "student-int8.card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card))


if __name__ == "__main__":
    main()
