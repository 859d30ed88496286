"""`cellctl eval` is the daemon's decision path: per image and per part (--parts) on a small
export of real renders, the committed INT8 student guarded by `cellctl guard`, onnxruntime.

The same part goes through the daemon (simulated cameras -> acquire -> analyse) and through
`cellctl eval` on the exported files: the pixels, the per-view scores, out-of-distribution
distances, problems and the outcome must agree.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from cellctl.cli import main as cli
from cellctl.config import CellConfig, file_sha256, resolve_profile
from cellctl.devices import CellDevices
from cellctl.evaluation import reason_pattern
from cellctl.inference import OnnxInferencer
from cellctl.link.protocol import Part
from cellctl.pipeline import Acquisition, acquire, analyse, model_key
from cellctl.sim.export import export_parts, export_shots, shoot
from cellctl.sim.part import sample_part
from cellctl.sim.scene import Renderer
from cellctl.sim.world import WORLD_KEY, SimWorld
from cellctl.vision.images import read_camera_image
from tests.conftest import PROFILES

PROFILE = "m8x40-hex"
RP = resolve_profile(PROFILES / f"{PROFILE}.yaml")
CONFIG = CellConfig.model_validate(
    {"devices": {n: {"url": "sim://"} for n in ("frame_camera", "line_camera", "stage", "lighting")}}
)
WORLD_SEED = 31


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed INT8 student with its out-of-distribution guard fitted by `cellctl guard`
    on good renders of other seeds (the committed file may not carry one yet)."""
    root = tmp_path_factory.mktemp("guard")
    export_parts(root / "fit", PROFILE, None, parts=3, seed=4201, defect_rate=0.0)
    export_parts(root / "holdout", PROFILE, None, parts=3, seed=4202, defect_rate=0.0)
    out = root / "guarded.onnx"
    code, printed = _cli(
        "guard",
        str(PROFILES / "models" / "student-int8.onnx"),
        str(out),
        *("--fit", str(root / "fit"), "--holdout", str(root / "holdout")),
        *("--profile", PROFILE, "--false-alarm-rate", "0.1"),
    )
    assert code == 0, printed
    return out


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("set")
    return root, export_parts(root, PROFILE, None, parts=4, seed=77, defect_rate=0.5)


def _eval(root: Path, model: Path, *extra: str) -> dict[str, Any]:
    code, out = _cli("eval", "--profile", PROFILE, "--model", str(model), str(root), "--json", *extra)
    assert code == 0, out
    return json.loads(out)


def _consistent(s: dict[str, Any]) -> None:
    """The figures of one kind add up to its confusion."""
    c = s["confusion"]
    assert s["n"] == sum(c["good"].values()) + sum(c["defect"].values()) == s["good"] + s["defective"]
    assert s["escapes"] == c["defect"]["good"] and s["false_rejects"] == c["good"]["defect"]
    assert s["rechecks"] == c["good"]["recheck"] + c["defect"]["recheck"]
    assert s["accuracy"] == round((c["good"]["good"] + c["defect"]["defect"]) / s["n"], 4)
    if s["rechecks"]:
        assert sum(s["recheck_reasons"].values()) >= s["rechecks"]  # every RECHECK has a cause


def test_the_export_writes_both_layouts_with_the_part_truth(export):
    root, counts = export
    parts = sorted((root / "parts").glob("*/*"))
    assert len(parts) == counts.get("parts/good", 0) + counts.get("parts/defect", 0) == 4
    for folder in parts:
        names = {p.name for p in folder.iterdir()}
        assert names == {"head0.png", "head90.png", "head180.png", "head270.png", "strip.png", "part.json"}
        record = json.loads((folder / "part.json").read_text())
        # the folder is the part's truth: a relevant indication (profile minimum length AND contrast)
        assert record["defective"] is (folder.parent.name == "defect") is any(record["relevant"])
        ins = RP.profile.inspection
        for ind, relevant in zip(record["indications"], record["relevant"], strict=True):
            is_relevant = (
                ind["length_mm"] >= ins.min_indication_length_mm and ind["contrast"] >= ins.min_indication_contrast
            )
            assert relevant is is_relevant
    images = sorted((root / "head").glob("*/*.png")) + sorted((root / "shank").glob("*/*.png"))
    assert len(images) == sum(
        v for k, v in counts.items() if k.split("/")[0] in ("head", "shank") and "left_out" not in k
    )
    # the per-image files are the part's files (hard links: the same pixels, no second copy)
    for image in images:
        pid, view = image.stem.rsplit("_", 1)
        same = next(root.glob(f"parts/*/{pid}/{view}.png"))
        assert same.read_bytes() == image.read_bytes()


def test_eval_per_image_reports_outcomes_per_kind_and_total(export, guarded):
    root, counts = export
    report = _eval(root, guarded)
    heads = counts.get("head/good", 0) + counts.get("head/defect", 0)
    shanks = counts.get("shank/good", 0) + counts.get("shank/defect", 0)
    assert report["mode"] == "images" and report["head"]["n"] == heads and report["shank"]["n"] == shanks
    assert report["total"]["n"] == heads + shanks == len(report["items"])
    assert report["head"]["defective"] == counts.get("head/defect", 0)
    for kind in ("head", "shank", "total"):
        _consistent(report[kind])
    assert report["unreadable"] == [] and report["ood_threshold"] > 0
    assert report["model"]["sha256"] == file_sha256(guarded)
    for it in report["items"]:
        assert it["called"] in ("good", "defect", "recheck") and it["reason"]
        if it["called"] == "recheck":
            assert it["causes"]
        elif it["called"] == "good":  # nothing stood against the PASS: every view scored and trusted
            assert all(v["problem"] is None for v in it["views"])
    # the table says the same in words
    code, table = _cli("eval", "--profile", PROFILE, "--model", str(guarded), str(root))
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines() if line.split()}
    assert code == 0 and "confusion" in table
    for kind in ("head", "shank", "total"):
        assert rows[kind][0] == str(report[kind]["n"]) and rows[kind][-2] == str(report[kind]["rechecks"])


def test_a_featureless_image_in_the_good_folder_is_recheck_with_its_reason(export, guarded, tmp_path):
    root, _ = export
    shutil.copytree(root / "head", tmp_path / "head")
    dark = np.full((2056, 2464), 6, np.uint8)  # the fixture under UV with no part in it
    cv2.imwrite(str(tmp_path / "head" / "good" / "empty_head0.png"), dark)
    report = _eval(tmp_path, guarded)
    (item,) = [i for i in report["items"] if i["name"] == "head/good/empty_head0.png"]
    assert item["truth"] == "good" and item["called"] == "recheck"
    assert item["reason"].startswith("head@0: ") and "no part" in item["reason"]
    assert report["head"]["confusion"]["good"]["recheck"] >= 1
    assert report["head"]["recheck_reasons"][reason_pattern(item["causes"][0])] >= 1
    code, table = _cli("eval", "--profile", PROFILE, "--model", str(guarded), str(tmp_path))
    assert code == 0 and f"head/good/empty_head0.png: {item['reason']}" in table


def test_an_unreadable_file_is_named_with_why_and_counted_as_recheck(export, guarded, tmp_path):
    root, _ = export
    shutil.copytree(root / "shank", tmp_path / "shank")
    strip = next((tmp_path / "shank").glob("*/*.png"))
    strip.write_bytes(strip.read_bytes()[:5000])  # a copy cut short
    (tmp_path / "shank" / "good" / "notes.png").write_text("not an image")
    cv2.imwrite(str(tmp_path / "shank" / "good" / "deep.png"), np.zeros((64, 64), np.uint16))
    report = _eval(tmp_path, guarded)
    rel = strip.relative_to(tmp_path)
    assert set(report["unreadable"]) == {
        f"{rel}: truncated PNG (5000 bytes, no end chunk)",
        "shank/good/notes.png: not an image (no PNG, TIFF or BMP header)",
        "shank/good/deep.png: 16-bit pixels, expected 8-bit",
    }
    for name in (str(rel), "shank/good/notes.png", "shank/good/deep.png"):
        (item,) = [i for i in report["items"] if i["name"] == name]
        assert item["called"] == "recheck" and item["reason"].startswith(f"cannot use {Path(name).name}: ")
    assert report["shank"]["recheck_reasons"]["unreadable: #-bit pixels, expected #-bit"] == 1
    _consistent(report["shank"])
    code, table = _cli("eval", "--profile", PROFILE, "--model", str(guarded), str(tmp_path))
    assert code == 0 and "shank/good/notes.png: not an image" in table and "counted as RECHECK" in table


def test_eval_parts_judges_whole_parts_and_a_part_missing_a_view_is_recheck(export, guarded, tmp_path):
    root, counts = export
    report = _eval(root, guarded, "--parts")
    assert report["mode"] == "parts" and set(report) >= {"part", "unreadable", "items"} and "total" not in report
    s = report["part"]
    assert s["n"] == 4 and s["defective"] == counts.get("parts/defect", 0)
    _consistent(s)
    # from the renders' part.json: good parts split by what they carry below the minimum
    drawn = report["drawn"]
    good = [i for i in report["items"] if i["truth"] == "good"]
    assert drawn["good_clean"]["n"] + drawn["good_with_subthreshold"]["n"] == len(good) and drawn["unrecorded"] == 0
    for it in report["items"]:
        record = json.loads((root / it["name"] / "part.json").read_text())
        assert it["drawn"]["subthreshold"] == len(record["relevant"]) - sum(record["relevant"])
        assert (it["drawn"]["strongest"] is not None) is (it["truth"] == "defect")
        # a part's score (what ranks it) is its highest trusted view's
        trusted = [v["score"] for v in it["views"] if v["problem"] is None and v["score"] is not None]
        assert it["score"] == max(trusted, default=None)
    rank = s["ranking"]
    assert rank["scored_good"] + rank["scored_defective"] + rank["unscored"] == 4
    for it in report["items"]:  # every head frame in the profile's order, then the strip's tiles
        heads = [v["name"].split("#")[0] for v in it["views"] if v["name"].startswith("head@")]
        assert heads == sorted(heads, key=lambda n: RP.profile.head_positions_deg.index(float(n[5:])))
    # a part folder without one of its views: RECHECK, the file named, never a verdict
    shutil.copytree(root / "parts", tmp_path / "parts")
    victim = sorted((tmp_path / "parts").glob("*/*"))[0]
    (victim / "head90.png").unlink()
    report = _eval(tmp_path, guarded, "--parts")
    (item,) = [i for i in report["items"] if i["name"] == str(victim.relative_to(tmp_path))]
    assert item["called"] == "recheck" and item["reason"] == "cannot use head90.png: missing" and item["views"] == []
    assert report["unreadable"] == [f"{victim.relative_to(tmp_path)}/head90.png: missing"]
    assert report["part"]["recheck_reasons"]["head#.png: missing"] == 1


def test_eval_parts_goes_on_past_part_records_and_views_it_cannot_use(export, guarded, tmp_path):
    root, _ = export
    shutil.copytree(root / "parts", tmp_path / "parts")
    deep, infinite, fifo, looped = sorted((tmp_path / "parts").glob("*/*"))
    (deep / "part.json").write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in json
    text = (infinite / "part.json").read_text()
    record = json.loads(text)
    record["indications"] = [{"length_mm": 1, "contrast": 1}]
    (infinite / "part.json").write_text(json.dumps(record).replace('"length_mm": 1,', '"length_mm": 1e400,'))
    (fifo / "part.json").unlink()
    os.mkfifo(fifo / "part.json")  # read, it would block for ever
    (looped / "strip.png").unlink()
    (looped / "strip.png").symlink_to("strip.png")
    code, out = _cli("eval", "--profile", PROFILE, "--model", str(guarded), str(tmp_path), "--json", "--parts")
    assert code == 0, out
    report = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in --json"))
    assert report["part"]["n"] == len(report["items"]) == 4
    rel = {p: str(p.relative_to(tmp_path)) for p in (deep, infinite, fifo, looped)}
    assert report["bad_records"] == [
        f"{rel[deep]}/part.json: nested too deeply to be a part record",
        f"{rel[infinite]}/part.json: not valid JSON: 1e400 is not a finite number",
        f"{rel[fifo]}/part.json: not a regular file: a FIFO",
    ]
    assert report["drawn"]["unrecorded"] == 3  # the looped part's record is used; its outcome is RECHECK
    assert report["unreadable"] == [f"{rel[looped]}/strip.png: cannot read it: Too many levels of symbolic links"]
    (item,) = [i for i in report["items"] if i["name"] == rel[looped]]
    assert item["called"] == "recheck" and "drawn" in item
    code, table = _cli("eval", "--profile", PROFILE, "--model", str(guarded), str(tmp_path), "--parts")
    assert code == 0 and f"  {rel[fifo]}/part.json: not a regular file: a FIFO" in table.splitlines()


async def test_eval_and_the_daemon_give_the_same_outcome_per_view_on_the_same_images(guarded, tmp_path):
    model = OnnxInferencer(guarded, file_sha256(guarded), 2)
    world = SimWorld(seed=WORLD_SEED, time_scale=0.0)
    devices = CellDevices.build(CONFIG, {WORLD_KEY: world})
    executor = ThreadPoolExecutor(max_workers=1)
    results = []
    try:
        await devices.connect(5.0)
        await devices.start(CONFIG.timeouts)
        await devices.configure(RP, 5.0)
        rng = np.random.default_rng([WORLD_SEED, 1])
        for k, defective in enumerate((True, False)):
            ins = RP.profile.inspection
            part_id = f"cmp-{k}"
            world.fixture = sample_part(
                rng,
                RP.profile.geometry,
                part_id,
                defective,
                min_length_mm=ins.min_indication_length_mm,
                min_contrast=ins.min_indication_contrast,
            )
            acq = Acquisition(Part(request_id=f"r-{k}", part_id=part_id), RP.name, RP, k + 1, 0.0, "boot-1")
            acq = await acquire(devices, acq, CONFIG.timeouts)
            assert acq.fault is None
            result = await analyse(acq, {model_key(RP): model}, executor, 60.0)
            # the same part exported as `cellctl sim --export` does, with the cameras' renderer
            export_shots(tmp_path, RP, shoot(Renderer(WORLD_SEED), RP, world.fixture))
            results.append((acq, result))
    finally:
        await devices.close()
        executor.shutdown(wait=True)

    parts = {i["name"].rsplit("/", 1)[1]: i for i in _eval(tmp_path, guarded, "--parts")["items"]}
    images = {i["name"]: i for i in _eval(tmp_path, guarded)["items"]}
    threshold = RP.profile.decision.threshold
    compared = alone_compared = 0
    for acq, result in results:
        truth = "defect" if acq.part_id == "cmp-0" else "good"
        folder = next(tmp_path.glob(f"parts/*/{acq.part_id}"))
        # the files hold exactly the pixels the cameras delivered (PNG is lossless)
        for angle, frame in zip(RP.profile.head_positions_deg, acq.head_frames, strict=True):
            data, fmt = read_camera_image(folder / f"head{angle:g}.png", "head", RP.profile)
            assert fmt == frame.pixel_format and np.array_equal(data, frame.data)
        data, fmt = read_camera_image(folder / "strip.png", "shank", RP.profile)
        assert fmt == acq.strip.pixel_format and np.array_equal(data, acq.strip.data)

        # --parts: the same part verdict, reason and per-view evidence as the daemon's
        item = parts[acq.part_id]
        assert folder.parent.name == truth  # drawn defective: at least one relevant indication
        assert item["called"] == {"PASS": "good", "REJECT": "defect", "RECHECK": "recheck"}[result.decision.outcome]
        assert item["reason"] == result.decision.reason
        views = {v["name"]: v for v in item["views"]}
        assert {n for n, v in views.items() if v["score"] is not None} == set(result.scores)
        for name, score in result.scores.items():
            assert views[name]["score"] == pytest.approx(score, abs=1e-5)
            assert views[name]["ood"] == pytest.approx(result.evidence["ood"][name], abs=1e-3)
            assert views[name]["problem"] == result.evidence["view_problems"].get(name)
            compared += 1
        assert item["coverage"] == result.evidence["coverage"]

        # per image: each view the daemon judged gets the same outcome from its image alone
        for name, score in result.scores.items():
            view_outcome = _view_outcome(score, result.evidence["view_problems"].get(name), threshold)
            image = _image_of(name, acq.part_id)
            matches = [i for key, i in images.items() if key.endswith(image)]
            if not matches:
                continue  # an image left out of the per-image layout (not clearly labelled)
            (it,) = matches
            alone = {v["name"]: v for v in it["views"]}[name]
            assert alone["score"] == pytest.approx(score, abs=1e-4)
            assert _view_outcome(alone["score"], alone["problem"], threshold) == view_outcome
            alone_compared += 1
    # not vacuous: views scored by both, on both layouts
    assert compared >= 5 and alone_compared >= 5, (compared, alone_compared)


def _image_of(view: str, part_id: str) -> str:
    if view.startswith("head@"):
        return f"/{part_id}_head{view[5:].split('#')[0]}.png"
    return f"/{part_id}_strip.png"


def _view_outcome(score: float | None, problem: str | None, threshold: float) -> str:
    """What one view says: recheck if the guard does not trust it, else defect or good."""
    if problem is not None or score is None or not math.isfinite(score):
        return "recheck"
    return "defect" if score >= threshold else "good"
