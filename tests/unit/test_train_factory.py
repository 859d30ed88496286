"""The student factory (`cellctl train`), with torch on the CPU: the split keeps parts whole,
augmentation keeps inputs valid, an interrupted run resumes to the very model an
uninterrupted one makes, the budget stops between epochs, and a tiny end-to-end run on
simulator renders writes a package whose INT8 model `cellctl check` accepts, `cellctl eval`
judges as the card says, and the simulated daemon runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from cellctl.cli import main as cli
from cellctl.config import file_sha256, resolve_profile
from cellctl.config.package_card import PackageCard
from cellctl.decision import Decision
from cellctl.evaluation import Judged, tally
from cellctl.outcome import Outcome
from cellctl.promotion import judge
from cellctl.train.augment import AUGMENTATIONS, augment, parse_augment
from cellctl.train.bags import Bags
from cellctl.train.deploy import whole_parts
from cellctl.train.fit import Budget, FitConfig, Refused, fit
from cellctl.train.items import Item, part_key
from cellctl.train.masks import NEGATIVE, UNKNOWN
from cellctl.train.split import SIDES, split_by_part
from tests.conftest import PROFILES, passing_copy, with_promotion


def items(parts: int, defective_every: int = 4, views: int = 5) -> list[Item]:
    return [
        Item("p", ((Path(f"/x/{k}_{v}.png"), "head"),), k % defective_every == 0 and v == 0, f"d:{k}", f"{k}_{v}")
        for k in range(parts)
        for v in range(views)
    ]


def test_the_split_keeps_each_part_on_one_side_and_deals_defects_to_every_side() -> None:
    found = items(40)
    split = split_by_part(found, (0.7, 0.15, 0.15), seed=3)
    for key in {i.part_key for i in found}:
        assert len({split.side_of[i.part_key] for i in found if i.part_key == key}) == 1
    summary = split.summary(found)
    assert sum(s["parts"] for s in summary.values()) == 40
    assert summary["train"]["parts"] == 28 and summary["val"]["parts"] == summary["heldout"]["parts"] == 6
    assert all(summary[s]["defect_items"] >= 1 for s in SIDES)  # 10 defective parts: each side some
    assert split.side_of == split_by_part(found, (0.7, 0.15, 0.15), seed=3).side_of  # seeded
    assert split.side_of != split_by_part(found, (0.7, 0.15, 0.15), seed=4).side_of
    few = split_by_part(items(8, defective_every=4), (0.7, 0.15, 0.15), seed=0)  # 2 defective parts
    assert {few.side_of[f"d:{k}"] for k in (0, 4)} <= set(SIDES)


def test_part_keys_of_the_export_names() -> None:
    assert part_key(Path("m8x40-hex-7-00012_head90.png")) == "m8x40-hex-7-00012"
    assert (
        part_key(Path("20261206T204209.885Z-0000000019-P00019_strip.png")) == "20261206T204209.885Z-0000000019-P00019"
    )
    assert part_key(Path("photo_0001.png")) == "photo_0001"  # no view suffix: a part of its own


def _judged(name: str, truth: str, outcome: Outcome) -> tuple[str, Judged]:
    return "m8x40-hex", Judged(name, "head", truth, Decision(outcome, f"{outcome} because", 0.5, name), ())


def test_a_part_is_judged_on_all_its_items_as_the_daemon_judges_it() -> None:
    rows = [
        ("a", "defect", Outcome.PASS),  # a head frame shows it at a tile's edge and misses it...
        ("a", "good", Outcome.REJECT),  # ...the strip shows it whole: the part is rejected
        ("b", "defect", Outcome.PASS),  # missed by every view: an escape
        ("b", "good", Outcome.PASS),
        ("c", "good", Outcome.RECHECK),  # a view not trusted: the part goes to a person
        ("c", "good", Outcome.PASS),
        ("d", "good", Outcome.RECHECK),  # a defect seen is a defect, whatever else failed
        ("d", "defect", Outcome.REJECT),
        ("e", "good", Outcome.PASS),
    ]
    judged = [_judged(f"{part}_{k}", truth, outcome) for k, (part, truth, outcome) in enumerate(rows)]
    held = [Item("m8x40-hex", ((Path(f"{j.name}.png"), "head"),), False, f"d:{j.name[0]}", j.name) for _, j in judged]
    parts = {j.name: j for _, j in whole_parts(judged, held)}
    called = {k: (j.truth, j.called) for k, j in parts.items()}
    assert called == {
        "d:a": ("defect", "defect"),
        "d:b": ("defect", "good"),
        "d:c": ("good", "recheck"),
        "d:d": ("defect", "defect"),
        "d:e": ("good", "good"),
    }
    assert parts["d:d"].decision.reason == "REJECT because"
    t = tally(parts.values())
    assert (t["n"], t["defective"], t["escapes"], t["false_rejects"], t["rechecks"]) == (5, 3, 1, 0, 1)


def test_the_gate_counts_escapes_per_part_and_falls_back_to_items_on_an_older_card() -> None:
    rp = resolve_profile(PROFILES / "m8x40-hex.yaml")
    figures = {"n": 100, "good": 80, "defective": 20, "false_rejects": 0, "rechecks": 0}
    card: dict[str, Any] = {
        "models": {"fp32": {"sha256": "0" * 64}, "int8": {"sha256": "1" * 64}},
        "heldout": {"int8": {"m8x40-hex": {"head": figures | {"escapes": 2}}}},  # 2 head frames missed...
        "heldout_parts": {
            "int8": {"m8x40-hex": {"part": {**figures, "n": 30, "good": 18, "defective": 12, "escapes": 0}}}
        },
        "int8_vs_fp32": {"items": 100, "items_differing": 0, "views_differing": 0, "views": 500},
        "heldout_decision": {"m8x40-hex": {"threshold": 0.5, "recheck_threshold": None}},
    }
    v = judge(PackageCard.model_validate(card), rp)  # ...each part caught by another of its views
    assert not v.failed, v.failed
    assert any("0 escapes of 12 defective held-out parts (2 of 20 defective images" in p for p in v.passed), v.passed
    card["heldout_parts"]["int8"]["m8x40-hex"]["part"]["escapes"] = 1
    assert any(
        "1 escapes of 12 defective held-out parts" in f for f in judge(PackageCard.model_validate(card), rp).failed
    )
    del card["heldout_parts"]  # a card written before parts were judged: its items decide
    assert any(
        "2 escapes of 20 defective held-out items" in f for f in judge(PackageCard.model_validate(card), rp).failed
    )


def test_augmentation_stays_in_range_and_can_be_switched_off() -> None:
    x = torch.rand(6, 3, 32, 32)
    rng = np.random.default_rng(0)
    for name in AUGMENTATIONS:
        y = augment(x, rng, frozenset({name}))
        assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert not torch.equal(y, x), name
    assert torch.equal(augment(x, rng, frozenset()), x)
    assert parse_augment("all") == frozenset(AUGMENTATIONS) and parse_augment("none") == frozenset()
    with pytest.raises(ValueError, match="unknown augmentation blur"):
        parse_augment("flip,blur")


def synthetic_bags(n: int = 8, tiles: int = 2, size: int = 64) -> Bags:
    """A bright line in the first tile of every other bag: something a network can learn."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 40, (n * tiles, 3, size, size), dtype=np.uint8)
    label = np.array([float(b % 2 == 0) for b in range(n)], np.float32)
    for b in range(0, n, 2):
        x[b * tiles, 1, size // 2, 8:-8] = 220
    found = tuple(Item("p", ((Path(f"{b}.png"), "head"),), bool(label[b]), f"k{b}", f"{b}") for b in range(n))
    counts = np.full(n, tiles, np.int64)
    tile_label = np.repeat(np.where(label > 0.5, UNKNOWN, NEGATIVE), tiles).astype(np.int8)
    return Bags(x, np.arange(0, n * tiles, tiles, dtype=np.int64), counts, label, tile_label, found, ())


CFG = FitConfig(arch="resnet10", epochs=2, lr=1e-3, bags_per_step=4, good_tiles_per_bag=1, seed=5)


def test_an_interrupted_run_resumes_to_the_same_model(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    bags = synthetic_bags()
    whole = fit(CFG, bags, bags, tmp_path / "whole.ckpt", Budget(None))
    cut = fit(CFG, bags, bags, tmp_path / "cut.ckpt", Budget(1e-9))  # any epoch is longer: one runs
    assert cut.stopped == "budget" and len(cut.history) == 1
    resumed = fit(CFG, bags, bags, tmp_path / "cut.ckpt", Budget(None), resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other = FitConfig(**{**CFG.__dict__, "lr": 2e-3})
    with pytest.raises(Refused, match="another run"):
        fit(other, bags, bags, tmp_path / "cut.ckpt", Budget(None), resume=True)
    with pytest.raises(Refused, match="budget ran out before the student"):  # the teachers took it all
        fit(CFG, bags, bags, tmp_path / "late.ckpt", Budget(60.0, spent=61.0))
    none = Bags(bags.x, bags.start, bags.count, np.zeros_like(bags.label), bags.tile_label, bags.items, ())
    with pytest.raises(Refused, match="no defective item"):
        fit(CFG, none, none, tmp_path / "none.ckpt", Budget(None))


def test_the_package_is_whole_and_its_card_adds_up(package: Path) -> None:
    names = {p.name for p in package.iterdir()}
    assert names == {"student-fp32.onnx", "student-int8.onnx", "card.json", "MODEL_CARD.md", "split.json", "train.json"}
    card = json.loads((package / "card.json").read_text())
    split = json.loads((package / "split.json").read_text())
    held = split["summary"]["heldout"]["items"]
    for model in ("fp32", "int8"):
        assert sum(t["n"] for t in card["heldout"][model]["m8x40-hex"].values()) == held
        assert card["models"][model]["sha256"] == file_sha256(package / f"student-{model}.onnx")
    assert card["teachers"][0]["arch"] == "resnet10" and card["student"]["distilled_from"] == ["resnet10"]
    # the student as a network alone, measured as the teachers are, on the same held-out items
    alone, teacher = card["student"]["heldout_torch"], card["teachers"][0]["heldout"]
    assert alone.keys() == teacher.keys() and 0 < sum(v["n"] for v in alone.values()) <= held
    assert all(v["n"] == teacher[k]["n"] and v["defective"] == teacher[k]["defective"] for k, v in alone.items())
    assert "Student resnet18 in torch at 0.5" in (package / "MODEL_CARD.md").read_text()
    assert card["int8_vs_fp32"]["items"] == held
    for model in ("fp32", "int8"):  # the same items judged as whole parts, one per held-out part
        whole = card["heldout_parts"][model]["m8x40-hex"]["part"]
        assert whole["n"] == split["summary"]["heldout"]["parts"] and whole["escapes"] <= held
    # what the figures were measured at, for the gate to hold against the profile's decision then
    assert card["heldout_decision"] == {"m8x40-hex": {"threshold": 0.5, "recheck_threshold": None}}
    q = card["int8_quantization"]  # checked against FP32 on val views (20: --calibration-views)
    assert 0 < q["after"]["views"] == q["before"]["views"] <= 20 and q["thresholds"] == [0.5]
    assert q["after"]["decisions_differ"] <= q["before"]["decisions_differ"] and len(q["kept_float"]) <= 2
    assert q["quantizations"] >= 1 + 9 * len(q["kept_float"])  # each kept block won a round of trials
    assert "INT8 quantization: " in (package / "MODEL_CARD.md").read_text()
    assert json.loads((package / "train.json").read_text())["versions"]["torch"].startswith("2.13")
    assert "held-out" in (package / "MODEL_CARD.md").read_text().lower()
    assert "| whole parts |" in (package / "MODEL_CARD.md").read_text()
    # the renders' masks located indications: those items trained tile by tile
    renders = package.parent / "renders"
    for kind in ("head", "shank"):
        defects = {p.name for p in (renders / kind / "defect").iterdir()}
        assert defects and {p.name for p in (renders / "masks" / kind).iterdir()} == defects
    masked = card["data"]["masked"]
    assert 0 < masked["located_by_mask"] <= masked["defective_items"]
    assert masked["positive_tiles"] >= masked["located_by_mask"]
    assert f"located the indication in {masked['located_by_mask']} of" in (package / "MODEL_CARD.md").read_text()


def test_a_profile_pointing_at_the_package_is_checked_evaluated_and_run(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES, profiles, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    path = profiles / "m8x40-hex.yaml"
    doc = yaml.safe_load(path.read_text())
    int8 = package / "student-int8.onnx"
    doc["model"].update(path=str(int8), sha256=file_sha256(int8))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli(["check", str(path)]) == 0
    # the card's held-out figures are what `cellctl eval` says of the same images
    card = json.loads((package / "card.json").read_text())
    split = json.loads((package / "split.json").read_text())
    heldout = tmp_path / "heldout"
    for key, side in split["parts"].items():
        if side != "heldout":
            continue
        data, part = key.rsplit(":", 1)
        for image in Path(data).glob(f"*/*/{part}_*.png"):
            if image.parent.parent.name in ("head", "shank"):
                dest = heldout / image.parent.parent.name / image.parent.name / image.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(image, dest)
    capsys.readouterr()
    assert cli(["eval", "--profile", str(path), "--json", str(heldout)]) == 0
    judged = json.loads(capsys.readouterr().out)
    for kind, figures in card["heldout"]["int8"]["m8x40-hex"].items():
        for key in ("n", "escapes", "false_rejects", "rechecks"):
            assert judged[kind][key] == figures[key], (kind, key)
    # the simulated daemon runs it
    assert cli(["sim", "--config", str(profiles / "cell-sim.yaml"), "--parts", "3", "--seed", "2"]) == 0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--profile", "m8x40-hex", "--profile", "m12x80-hex", "--data", "{D}"], "once per --profile"),
        (["--profile", "m8x40-hex", "--data", "{D}", "--split", "0.5,0.5"], "fractions"),
        (["--profile", "m8x40-hex", "--data", "{D}", "--teachers", "vgg"], "unknown network vgg"),
        (["--profile", "m8x40-hex", "--data", "{D}", "--augment", "blur"], "unknown augmentation blur"),
        (["--profile", "m8x40-hex", "--data", "{D}"], "no labelled images"),
    ],
)
def test_train_misuse_is_one_line(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{D}", str(tmp_path)) for a in argv]
    try:
        code = cli(["train", str(tmp_path / "out"), *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def profile_copy(tmp_path: Path, **promotion: object) -> Path:
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES, profiles, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    path = profiles / "m8x40-hex.yaml"
    return with_promotion(path, **promotion) if promotion else path


def test_the_gate_refuses_a_package_that_fails_and_leaves_the_profile_alone(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = profile_copy(tmp_path)
    before = path.read_bytes()
    capsys.readouterr()
    assert cli(["promote", str(package), "--profile", str(path), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert not result["promoted"] and path.read_bytes() == before
    assert any("defective held-out parts" in f for f in result["failed"])  # one epoch on 16 parts: too little
    assert cli(["promote", str(tmp_path), "--profile", str(path)]) == 2  # no card: not a package
    assert "no card.json" in capsys.readouterr().err
    # a model swapped after it was measured is not the model the card speaks for
    swapped = tmp_path / "swapped"
    shutil.copytree(package, swapped)
    (swapped / "student-int8.onnx").write_bytes((PROFILES / "models" / "student-int8.onnx").read_bytes())
    assert cli(["promote", str(swapped), "--profile", str(path), "--json"]) == 1
    assert any("is the model the card measured" in f for f in json.loads(capsys.readouterr().out)["failed"])
    # and `cellctl check` refuses a profile that runs a model its package did not measure
    doc = yaml.safe_load(path.read_text())
    doc["model"].update(path=str(swapped / "student-int8.onnx"), sha256=file_sha256(swapped / "student-int8.onnx"))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli(["check", str(path)]) == 1
    assert "not a model its package's card.json measured" in capsys.readouterr().err


def test_a_package_that_passes_is_written_into_the_profile_and_the_old_model_stays(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gate's write path. The tiny package's figures are set to passing ones in its card
    (a real run that passes takes hours); the timing is real, with a tolerance no CPU noise reaches."""
    good = passing_copy(package, tmp_path / "good")
    card = json.loads((good / "card.json").read_text())
    part = card["heldout_parts"]["int8"]["m8x40-hex"]["part"]
    part["n"] = part["good"] + part["defective"]  # figures that add up (the gate refuses any other)
    (good / "card.json").write_text(json.dumps(card))
    path = profile_copy(tmp_path, speed_tolerance=10)
    old = yaml.safe_load(path.read_text())["model"]
    capsys.readouterr()
    assert cli(["promote", str(good), "--profile", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["promoted"] and not result["failed"]
    new = yaml.safe_load(path.read_text())["model"]
    assert new["sha256"] == card["models"]["int8"]["sha256"] == file_sha256(path.parent / new["path"])
    assert (path.parent / old["path"]).is_file()  # the previous model stays runnable
    before = path.with_name(f"{path.name}.before-{new['sha256'][:12]}")
    assert yaml.safe_load(before.read_text())["model"] == old
    assert "# smallest relevant indication" in path.read_text()  # comments kept
    assert cli(["check", str(path)]) == 0


def test_a_val_split_too_small_for_the_guard_is_refused_before_any_training(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli(["train", str(out), "--profile", "m8x40-hex", "--data", str(package.parent / "renders")]) == 2
    err = capsys.readouterr().err
    assert "the val split has" in err and "--false-alarm-rate 0.001 needs at least 1000" in err, err
    assert not list(out.glob("work/*.ckpt"))  # refused before the first epoch, not after the last
