"""The model card's measurement (sim/model_card.py): what it renders, judges and compares.

The whole script is run by hand (``python -m cellctl.sim.model_card --quick``, a few minutes);
here its parts: the perturbation table against the presets, the in-memory judgement against
``cellctl eval`` on the export (3 parts, about 15 s), the brightness rule's figures, the cell
config that makes the simulated cell and POD run another INT8 file.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from cellctl.commands.common import find_profile
from cellctl.config import file_sha256
from cellctl.evaluation import evaluate, evaluate_parts
from cellctl.inference import OnnxInferencer
from cellctl.sim import model_card as mc
from cellctl.sim.conditions import DEFAULT, PLANT, SEED, Conditions


def test_each_perturbation_switches_on_one_group_of_plant_ranges_and_together_they_cover_plant():
    fields = [f.name for f in dataclasses.fields(Conditions) if f.name != "name"]
    differing = {f for f in fields if getattr(SEED, f) != getattr(PLANT, f)}
    groups = [set(p.fields) for p in mc.PERTURBATIONS]
    assert sorted(f for g in groups for f in g) == sorted(differing)  # each differing field in exactly one group
    for p in mc.PERTURBATIONS:
        v = mc.variant(p)
        changed = {f for f in differing if getattr(v, f) != getattr(SEED, f)}
        assert changed == set(p.fields), p.key
        assert all(getattr(v, f) == getattr(PLANT, f) for f in p.fields)
    assert len({p.key for p in mc.PERTURBATIONS}) == len(mc.PERTURBATIONS)


def test_the_sets_use_seeds_of_their_own():
    sets = mc.plan_sets(mc.QUICK)
    seeds = {s.seed for s in sets}
    assert seeds == {*mc.HELDOUT_SEEDS.values(), mc.SEED_RENDERS_SEED, mc.PERTURBATION_SEED}
    # the shipped model's training, guard and INT8 calibration: every part of its package's split
    # (train, val and heldout alike) names the seed it was rendered with: <profile>-<seed>-<index>
    split = json.loads((mc.MODELS / mc.PACKAGE_SPLIT).read_text())["parts"]
    trained = {int(key.rsplit(":", 1)[-1].rsplit("-", 2)[1]) for key in split}
    assert trained and not seeds & (trained | {mc.POD_SEED, mc.SIM_SEED})
    assert {s.key for s in sets if s.conditions is DEFAULT} == {f"heldout-{p}" for p in mc.PROFILES}


@pytest.mark.timeout(120)
def test_in_memory_judgement_gives_the_figures_cellctl_eval_gives_on_the_export(tmp_path):
    """~15 s: 3 parts rendered twice (written and not), judged in memory, then by eval from disk."""
    int8 = mc.MODELS / "student-int8.onnx"
    s = mc.RenderSet("heldout-m8x40-hex", "m8x40-hex", 7001, 3, DEFAULT, (("int8", "images"), ("int8", "parts")))
    models = (("int8", int8),)
    written = mc._measure(mc.Task(s, 0, 3, models, tmp_path))
    unwritten = mc._measure(mc.Task(s, 0, 3, models, None))
    assert unwritten.counts == written.counts  # export_counts counts what export_shots writes
    assert unwritten.rendered == written.rendered
    figures = mc.set_figures(s, [unwritten])
    rp = find_profile("m8x40-hex", None, verify_model=False)[0]
    model = OnnxInferencer(int8, file_sha256(int8), 1, input_size_px=rp.profile.preprocess.input_size_px)
    images, parts = evaluate(rp, model, tmp_path), evaluate_parts(rp, model, tmp_path)
    pairs = [(figures["int8"]["images"][k], images[k]) for k in ("head", "shank", "total")]
    pairs.append((figures["int8"]["parts"]["part"], parts["part"]))
    for mine, theirs in pairs:
        assert mine == mc._trim(theirs)  # every figure; the card keeps the commonest recheck causes only
    assert figures["int8"]["parts"]["part"]["n"] == 3 and figures["int8"]["images"]["total"]["n"] >= 3
    assert figures["exported"] == {k: v for k, v in sorted(written.counts.items())}


def _part(value: float, defective: bool, images: tuple[tuple[str, bool | None, float], ...] = ()) -> mc.Rendered:
    return mc.Rendered(f"p{value}", defective, images, value)


def test_the_rule_is_scored_at_its_best_threshold_per_part_and_per_image_kind():
    parts = [
        _part(100, False, (("head", False, 90.0), ("shank", None, 250.0))),  # a left-out image is not scored
        _part(150, False, (("head", False, 150.0), ("shank", False, 60.0))),
        _part(140, True, (("head", True, 140.0), ("shank", False, 70.0))),
        _part(200, True, (("head", None, 10.0), ("shank", True, 80.0))),
    ]
    figures = mc.rule_figures(parts)
    # per part: 140 calls one good part defect, 200 lets one defective pass: a tie, fewer escapes win
    assert figures["part"] == {
        "threshold": 140.0,
        "n": 4,
        "good": 2,
        "defective": 2,
        "escapes": 0,
        "false_rejects": 1,
        "accuracy": 0.75,
        "escape_rate": 0.0,
        "false_reject_rate": 0.5,
    }
    assert figures["head"]["n"] == 3 and figures["head"]["threshold"] == 140.0 and figures["head"]["false_rejects"] == 1
    assert figures["shank"]["n"] == 3 and figures["shank"]["threshold"] == 80.0 and figures["shank"]["accuracy"] == 1.0


def test_another_int8_gets_a_cell_config_whose_profiles_run_it(tmp_path):
    other = tmp_path / "other-int8.onnx"
    shutil.copyfile(mc.MODELS / "student-int8.onnx", other)
    with other.open("ab") as fh:
        fh.write(b"\0")  # another sha256: the shipped profiles cannot run it as they are
    config = mc.sim_config(tmp_path / "work", other)
    assert config is not None
    for name in mc.PROFILES:
        rp = find_profile(name, config)[0]  # verify_model: the path and sha256 are other's
        assert rp.model_path == other.resolve()
        assert rp.profile.model.sha256 == file_sha256(other)
