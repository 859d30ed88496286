"""The out-of-distribution guard inside the model file, on the committed models and real renders:
the graph's ``ood_score`` is the Mahalanobis distance of the pooled features, its metadata
round-trips, re-guarding replaces it, an unguarded model is refused, the threshold is the
held-out quantile, and a featureless frame scores far above it."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cellctl import ood
from cellctl.cli import main as cli
from cellctl.commands.common import find_profile
from cellctl.config import file_sha256
from cellctl.drivers import DriverInitError
from cellctl.inference import NO_GUARD, OnnxInferencer, verify_model
from cellctl.ood.calibrate import views_of
from cellctl.ood.fit import far_upper_bound, fit_whitening, min_holdout_views, pooled, threshold_at
from cellctl.ood.graph import PREFIX, add_guard, metadata, remove_guard
from cellctl.sim.export import export_parts
from cellctl.vision.images import labelled_images
from tests.conftest import PROFILES

MODELS = PROFILES / "models"
PROFILE = "m8x40-hex"
FAR = 0.05  # the renders here are a few dozen views: a rate they can show


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good parts (enough for the graph and the command), fit and holdout of other seeds."""
    root = tmp_path_factory.mktemp("ood")
    export_parts(root / "fit", PROFILE, None, parts=3, seed=4101, defect_rate=0.0)
    export_parts(root / "holdout", PROFILE, None, parts=3, seed=4102, defect_rate=0.0)
    return root


def _views(folder: Path) -> list[np.ndarray]:
    """Per image, the batch the daemon scores (the command's own image -> batch path)."""
    rp = find_profile(PROFILE, None, verify_model=False)[0]
    batches = []
    for path, kind, _ in labelled_images(folder):
        batch, problems = views_of(rp, path, kind)
        assert not problems, problems
        batches.append(batch)
    return batches


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def guarded(renders: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The committed INT8 model guarded by `cellctl guard`, and the figures it printed."""
    out = tmp_path_factory.mktemp("guarded") / "student-int8-guarded.onnx"
    code, printed = _cli(
        "guard",
        str(MODELS / "student-int8.onnx"),
        str(out),
        "--fit",
        str(renders / "fit"),
        "--holdout",
        str(renders / "holdout"),
        "--profile",
        PROFILE,
        "--false-alarm-rate",
        str(FAR),
        "--json",
    )
    assert code == 0
    return out, json.loads(printed)


@pytest.mark.parametrize("name", ["student-fp32.onnx", "student-int8.onnx"])
def test_the_guard_is_the_mahalanobis_distance_of_the_pooled_features(name: str, renders: Path) -> None:
    views = np.concatenate(_views(renders / "fit"))
    model = onnx.load(str(MODELS / name))
    remove_guard(model)  # the committed model as trained (and quantized), whatever it ships with
    probs, features = _session(model).run(["defect_prob", "features"], {"image": views})
    fit = pooled(features[: len(views) // 2])
    whitening = fit_whitening(fit)
    add_guard(model, whitening)
    probs2, features2, score = _session(model).run(["defect_prob", "features", "ood_score"], {"image": views})
    # the model's own outputs are untouched
    np.testing.assert_array_equal(probs2, probs)
    np.testing.assert_array_equal(features2, features)
    # numpy, independently of the whitening matrix: sqrt(d^T S^-1 d) with S solved directly
    a, d = whitening.shrinkage, fit.shape[1]
    cov = np.cov(fit, rowvar=False, bias=True)
    s = (1 - a) * cov + a * np.trace(cov) / d * np.eye(d)
    diff = pooled(features) - fit.mean(axis=0)
    expected = np.sqrt(np.einsum("ij,ij->i", diff, np.linalg.solve(s, diff.T).T))
    assert score.dtype == np.float32 and score.shape == (len(views),)
    np.testing.assert_allclose(score, expected, rtol=1e-4)
    # the guard stays float in a quantized graph: the nodes it added are float ops only
    added = [n.op_type for n in model.graph.node if n.name.startswith(PREFIX)]
    assert added == ["GlobalAveragePool", "Flatten", "Sub", "MatMul", "Mul", "ReduceSum", "Sqrt"]


def test_guard_writes_a_model_the_daemon_loads_with_its_threshold_in_the_metadata(guarded) -> None:
    out, figures = guarded
    inferencer = OnnxInferencer(out, file_sha256(out), threads=2, input_size_px=224)
    assert figures["sha256"] == file_sha256(out)
    meta = metadata(onnx.load(str(out), load_external_data=False))
    assert inferencer.ood_threshold == float(meta[ood.THRESHOLD]) == figures["threshold"]
    assert float(meta[ood.FALSE_ALARM_RATE]) == FAR == figures["false_alarm_rate"]
    assert int(meta[ood.FIT_VIEWS]) == figures["fit"]["views"] == sum(figures["fit"]["by"].values())
    assert int(meta[ood.HOLDOUT_VIEWS]) == figures["holdout"]["views"]
    assert int(meta[ood.HOLDOUT_FALSE_ALARMS]) == figures["holdout"]["false_alarms"]
    assert float(meta[ood.SHRINKAGE]) == figures["shrinkage"] == 0.05
    assert meta[ood.PROFILES] == PROFILE
    probs, scores = inferencer.infer(np.zeros((2, 3, 224, 224), np.float32))
    assert probs.shape == (2,) and scores is not None and scores.shape == (2,)


def test_the_threshold_is_the_held_out_quantile(guarded, renders: Path) -> None:
    out, figures = guarded
    inferencer = OnnxInferencer(out, file_sha256(out), threads=2)
    scores = np.concatenate([inferencer.infer(batch)[1] for batch in _views(renders / "holdout")])
    n = len(scores)
    assert n == figures["holdout"]["views"] >= min_holdout_views(FAR)
    t = inferencer.ood_threshold
    allowed = math.floor(FAR * n)
    assert np.sort(scores)[::-1][allowed] == pytest.approx(t, rel=1e-5)  # a held-out score, at its rank
    above = int(np.count_nonzero(scores > t * (1 + 1e-5)))
    assert above == figures["holdout"]["false_alarms"] <= allowed
    # and the fit views are not what set it: the fit figures are in-sample, the threshold is not
    assert figures["fit"]["views"] > 0 and set(figures["holdout"]["by"]) == {f"{PROFILE}/head", f"{PROFILE}/shank"}


def test_a_featureless_frame_scores_far_above_the_threshold(guarded) -> None:
    out, _ = guarded
    inferencer = OnnxInferencer(out, file_sha256(out), threads=2)
    t = inferencer.ood_threshold
    assert t is not None
    grey, white = np.full((1, 3, 224, 224), 0.5, np.float32), np.ones((1, 3, 224, 224), np.float32)
    green = np.zeros((1, 3, 224, 224), np.float32)
    green[:, 1] = 0.5  # a flat fluorescent field: closer to a part's surface, nearer the threshold
    _, scores = inferencer.infer(np.concatenate([grey, white, green]))
    assert scores is not None
    assert (scores[:2] > 5 * t).all() and scores[2] > t, (scores, t)
    assert all(ood.is_out_of_distribution(float(s), t) for s in scores)


def test_guarding_a_guarded_model_replaces_its_guard(guarded, renders: Path, tmp_path: Path) -> None:
    first, _ = guarded
    again = tmp_path / "again.onnx"
    code, printed = _cli(
        "guard",
        str(first),
        str(again),
        "--fit",
        str(renders / "fit"),
        "--holdout",
        str(renders / "holdout"),
        "--profile",
        PROFILE,
        "--false-alarm-rate",
        "0.1",
        "--shrinkage",
        "0.5",
        "--json",
    )
    assert code == 0
    result = json.loads(printed)
    assert result["replaced_guard"]  # its input carried the guard the first run wrote
    model = onnx.load(str(again))
    assert [o.name for o in model.graph.output] == ["defect_prob", "features", "ood_score"]
    assert len([n for n in model.graph.node if n.name.startswith(PREFIX)]) == 7
    assert len([i for i in model.graph.initializer if i.name.startswith(PREFIX)]) == 3
    keys = [p.key for p in model.metadata_props if p.key.startswith(ood.META_PREFIX)]
    assert sorted(keys) == sorted(set(keys)) and ood.THRESHOLD in keys
    meta = metadata(model)
    assert float(meta[ood.SHRINKAGE]) == 0.5 and float(meta[ood.FALSE_ALARM_RATE]) == 0.1
    assert OnnxInferencer(again, file_sha256(again), threads=1).ood_threshold == result["threshold"]
    # and taking it out gives the model back as it was before any guard
    remove_guard(model)
    original = onnx.load(str(MODELS / "student-int8.onnx"))
    remove_guard(original)
    assert model.graph == original.graph and metadata(model) == metadata(original)


def test_a_model_without_the_guard_is_refused_by_check_and_by_the_inferencer(profiles_copy, capsys) -> None:
    model = onnx.load(str(profiles_copy / "models" / "student-int8.onnx"))
    remove_guard(model)
    plain = profiles_copy / "models" / "plain.onnx"
    onnx.save(model, str(plain))
    assert NO_GUARD in verify_model(plain, 224)
    with pytest.raises(DriverInitError, match="no out-of-distribution guard"):
        OnnxInferencer(plain, file_sha256(plain), threads=1)
    profile = profiles_copy / f"{PROFILE}.yaml"
    text = profile.read_text()
    text = text.replace("models/student-int8.onnx", "models/plain.onnx")
    profile.write_text(text.replace(text.split('sha256: "')[1].split('"')[0], file_sha256(plain)))
    assert cli(["check", str(profile)]) == 1
    err = capsys.readouterr().err
    assert "plain.onnx: no output 'ood_score'" in err and "cellctl guard" in err


@pytest.mark.parametrize("value", [None, "nan", "inf", "-3.0", "0", "twelve"])
def test_a_guard_without_a_usable_threshold_is_refused(guarded, tmp_path: Path, value: str | None) -> None:
    model = onnx.load(str(guarded[0]))
    kept = [p for p in model.metadata_props if p.key != ood.THRESHOLD]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if value is not None:
        model.metadata_props.add(key=ood.THRESHOLD, value=value)
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    problems = verify_model(path, 224)
    assert any(ood.THRESHOLD in p for p in problems), problems
    with pytest.raises(DriverInitError, match="refusing to run it"):
        OnnxInferencer(path, file_sha256(path), threads=1)


def test_threshold_at_is_the_rank_of_the_allowed_false_alarms() -> None:
    scores = np.random.default_rng(3).permutation(np.arange(1.0, 201.0))
    t = threshold_at(scores, 0.05)  # 10 of 200 may be above
    assert (t.value, t.false_alarms, t.views) == (190.0, 10, 200)
    ties = threshold_at(np.array([1.0] * 50 + [5.0] * 50), 0.1)  # the top is one value: nothing above it
    assert (ties.value, ties.false_alarms) == (5.0, 0)
    assert threshold_at(np.arange(10.0), 0.05).value == 9.0  # fewer than 1/far views: the maximum
    for bad in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError):
            threshold_at(scores, bad)
    assert min_holdout_views(0.001) == 1000 and min_holdout_views(0.05) == 20
    assert far_upper_bound(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-6)
    assert far_upper_bound(2, 2000) == pytest.approx(0.0031445, rel=1e-3)  # Clopper-Pearson, one-sided
    assert ood.is_out_of_distribution(math.nan, 1.0) and not ood.is_out_of_distribution(1.0, 1.0)


def test_guard_refuses_what_it_cannot_do_in_one_line(renders: Path, tmp_path: Path, capsys) -> None:
    model, out = str(MODELS / "student-int8.onnx"), str(tmp_path / "o.onnx")
    fit, holdout = str(renders / "fit"), str(renders / "holdout")
    cases = [
        ((model, model, "--fit", fit, "--holdout", holdout, "--profile", PROFILE), "is the input model"),
        (
            (model, out, "--fit", fit, "--fit", fit, "--holdout", holdout, "--profile", PROFILE),
            "once per --profile",
        ),
        ((model, out, "--fit", fit, "--holdout", holdout, "--profile", PROFILE), "at least 1000"),
        ((model, out, "--fit", str(tmp_path), "--holdout", holdout, "--profile", PROFILE), "no images"),
    ]
    for argv, says in cases:
        assert cli(["guard", *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.onnx").exists()
