"""Analysis: estimator contract, grouped CV, CIs, JSON detectors, calibration, verification,
on trace datasets the collector makes from the organism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold

from analysis import (HallucinationDetector, calibrate, evaluate_rule, load_detector, mention_scores, rate_by_decile,
                      saliency_by_label, save_detector, score_traces)
from analysis.detectors import group_folds, out_of_fold, ranking_metrics
from analysis.features import FEATURE_SETS, feature_matrix, load_tokens
from lvsal_data.collect import collect
from lvsal_data.commands import fit_detectors
from lvsal_data.config import CollectConfig
from lvsal_data.store import open_traces


def _toy(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 30, n)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 4)) + y[:, None] * np.array([1.5, 0, 0, 0])
    return X, y, groups


def test_estimator_contract() -> None:
    X, y, groups = _toy()
    det = HallucinationDetector(C=0.5)
    assert det.get_params()["C"] == 0.5 and clone(det).get_params() == det.get_params()
    with pytest.raises(NotFittedError):
        det.predict_proba(X)
    fitted = det.fit(X, y)
    assert fitted is det and det.n_features_in_ == 4 and list(det.classes_) == [0, 1] and hasattr(det, "pipeline_")
    assert not hasattr(clone(det), "pipeline_")
    p = det.predict_proba(X)
    assert p.shape == (len(X), 2) and np.allclose(p.sum(1), 1)
    search = GridSearchCV(HallucinationDetector(), {"C": [0.1, 1.0]}, cv=GroupKFold(3), scoring="roc_auc")
    search.fit(X, y, groups=groups)
    assert search.best_params_["C"] in (0.1, 1.0)
    boost = HallucinationDetector(model="boosting", max_iter=20).fit(X, y)
    assert boost.score_samples(X).shape == (len(X),)


def test_grouped_folds_never_share_an_image() -> None:
    _, _, groups = _toy()
    folds = group_folds(groups, 5)
    assert len(folds) == 5
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(len(groups)))


def test_out_of_fold_scores_never_see_their_image() -> None:
    """A memoriser (1-NN on the image id) scores perfectly in-sample and at chance out of fold."""
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(40), 5)
    y = np.repeat(rng.integers(0, 2, 40), 5)  # the label is a property of the image
    X = groups[:, None].astype(float) + rng.normal(scale=1e-3, size=(len(groups), 1))
    from sklearn.neighbors import KNeighborsClassifier

    class Memoriser(HallucinationDetector):
        def _pipeline(self):
            from sklearn.pipeline import Pipeline

            return Pipeline([("clf", KNeighborsClassifier(1))])

    scores = out_of_fold(Memoriser(), X, y, groups)
    assert ranking_metrics(y, scores, groups)["auroc"]["value"] < 0.75
    assert ranking_metrics(y, Memoriser().fit(X, y).score_samples(X), groups)["auroc"]["value"] == 1.0


def test_ranking_metrics_equal_sklearns() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from analysis.detectors import auroc, average_precision

    rng = np.random.default_rng(0)
    for n, ties in ((50, False), (200, True), (7, True)):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        scores = rng.integers(0, 5, n).astype(float) if ties else rng.normal(size=n)
        assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
        assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    assert math.isnan(auroc(np.zeros(4), np.arange(4.0))) and math.isnan(average_precision(np.zeros(4), np.arange(4.0)))


def test_intervals_bracket_the_value() -> None:
    X, y, groups = _toy()
    scores = out_of_fold(HallucinationDetector(), X, y, groups)
    m = ranking_metrics(y, scores, groups)
    for key in ("auroc", "auprc"):
        assert m[key]["ci_low"] <= m[key]["value"] <= m[key]["ci_high"]
    assert m["n_pos"] + m["n_neg"] == len(y) and m["auroc"]["value"] > 0.75


def test_detector_json_round_trip_without_pickle(tmp_path: Path) -> None:
    X, y, _ = _toy()
    det = HallucinationDetector().fit(X, y)
    path = save_detector(det, tmp_path / "d.json", "toy", ["a", "b", "c", "d"])
    doc = json.loads(path.read_text())  # plain JSON: numbers and names only
    assert doc["format"] == "lvsal-detector/1" and doc["feature_names"] == ["a", "b", "c", "d"]
    loaded, _ = load_detector(path)
    np.testing.assert_allclose(loaded.predict_proba(X), det.predict_proba(X), rtol=1e-12)


# --- on trace datasets made by the collector ---------------------------------------------------

@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Greedy organism traces of test scenes (priors broken) and of held-out test scenes drawn
    from the same distribution with another world seed."""
    root = tmp_path_factory.mktemp("traces")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LVSAL_CACHE", str(tmp_path_factory.mktemp("cache")))
        for name, spec in (("test", "synthetic:split=test,n=24"), ("held", "synthetic:split=test,n=24,seed=1")):
            out[name] = root / name
            collect(CollectConfig(data=spec, out=str(out[name]), max_new_tokens=40, lookback_heads=True,
                                  hidden_states=True, hidden_dim=16, batch_size="8"),
                    progress=False)  # rows are batch-1's (test_batch.py)
    return out


@pytest.fixture(scope="module")
def fitted(traces: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """fit-detector on the test traces, transferred to the held-out ones."""
    out = tmp_path_factory.mktemp("det")
    return fit_detectors(traces["test"], out, eval_traces=traces["held"], progress=False), out


def test_features_of_each_set(traces: dict[str, Path]) -> None:
    t = open_traces(traces["test"])
    data = load_tokens(t)
    assert len(data.y) > 0 and set(data.frame["label"]) <= {"correct", "hallucinated"}
    assert data.frame["mention_start"].all()
    n_layers, n_heads = t.manifest["model"]["num_layers"], t.manifest["model"]["num_heads"]
    hidden = len(t.manifest["hidden"]["layers"]) * 16
    assert t.manifest["hidden"]["projected"] and t.manifest["hidden"]["layers"] == t.manifest["target_layers"]
    sizes = {name: feature_matrix(data, name)[0].shape[1] for name in FEATURE_SETS.names()}
    assert sizes == {"saliency": 5 * n_layers + 1, "attention": n_layers * n_heads, "image_attention": 3 * n_layers,
                     "logit": 2, "hidden": hidden,
                     "all": 5 * n_layers + 1 + n_layers * n_heads + 3 * n_layers + 2 + hidden}
    assert all(np.isfinite(feature_matrix(data, name)[0]).all() for name in FEATURE_SETS.names())


def test_a_feature_set_the_traces_lack_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lvsal_data.errors import InputError

    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "cache"))
    collect(CollectConfig(data="synthetic:split=test,n=2", out=str(tmp_path / "t"), max_new_tokens=4), progress=False)
    with pytest.raises(InputError, match="'hidden'.*lacks hidden.*--hidden-states"):
        feature_matrix(load_tokens(open_traces(tmp_path / "t")), "hidden")


def test_fit_detector_ranks_every_set_and_reports_transfer(traces: dict[str, Path], fitted: tuple[dict, Path]) -> None:
    report, out = fitted
    sets = ["saliency", "attention", "image_attention", "logit", "hidden", "all"]
    assert sorted(report["ranking"]) == sorted(sets) and not report["meta"]["skipped_sets"]
    aurocs = [report[name]["auroc"]["value"] for name in report["ranking"]]
    assert aurocs == sorted(aurocs, reverse=True)
    assert [report[n]["rank"] for n in report["ranking"]] == [1, 2, 3, 4, 5, 6]
    for name in sets:
        r = report[name]
        assert r["n_pos"] > 0 and r["n_neg"] > 0
        for key in ("auroc", "auprc"):
            assert set(r[key]) == {"value", "ci_low", "ci_high"}
            assert r[key]["ci_low"] <= r[key]["value"] <= r[key]["ci_high"]
        t = report["transfer"][name]
        assert t["drop"]["value"] == pytest.approx(r["auroc"]["value"] - t["auroc"]["value"])
        assert t["drop"]["ci_low"] <= t["drop"]["value"] <= t["drop"]["ci_high"]
    written = json.loads((out / "report.json").read_text())
    assert written["saliency"]["n_pos"] == report["saliency"]["n_pos"]
    assert (out / "roc.png").stat().st_size > 1000
    scored = score_traces(out / "detector.json", traces["held"])
    assert len(scored) > 0 and scored["p_hallucinated"].between(0, 1).all()
    # the transfer figure is the saved detector (all features, fitted on all test traces) on the held traces
    held = ranking_metrics((scored["label"] == "hallucinated").to_numpy(int), scored["p_hallucinated"].to_numpy(),
                           scored["image_id"].to_numpy())
    assert held["auroc"]["value"] == pytest.approx(report["transfer"]["all"]["auroc"]["value"])


def test_the_saved_detector_scores_without_sklearn_as_sklearn_does(traces: dict[str, Path],
                                                                  fitted: tuple[dict, Path]) -> None:
    from lvsal_data.scoring import LinearDetector

    _, out = fitted
    fitted_detector, _ = load_detector(out / "detector.json")
    data = load_tokens(open_traces(traces["held"]))
    X, _ = feature_matrix(data, "all")
    np.testing.assert_allclose(LinearDetector.load(out / "detector.json").score_rows(data.frame),
                               fitted_detector.score_samples(X), rtol=1e-10, atol=1e-12)


def test_online_p_hallucinated_equals_the_offline_detector(traces: dict[str, Path], fitted: tuple[dict, Path],
                                                          tmp_path: Path) -> None:
    import pandas as pd

    from lvsal_data.errors import InputError

    _, out = fitted
    detector = str(out / "detector.json")
    run = CollectConfig(data="synthetic:split=test,n=6,seed=2", out=str(tmp_path / "online"), max_new_tokens=24,
                        lookback_heads=True, hidden_states=True, hidden_dim=16, detector=detector, batch_size="3")
    with pytest.raises(InputError, match="--hidden-states"):  # refused before anything is written
        collect(CollectConfig(**{**run.__dict__, "hidden_states": False, "out": str(tmp_path / "refused")}),
                progress=False)
    assert not (tmp_path / "refused").exists()
    collect(run, progress=False)
    online = pd.read_parquet(tmp_path / "online" / "data" / "tokens")
    assert online["p_hallucinated"].notna().all()
    offline = score_traces(detector, tmp_path / "online").merge(online, on=["sample_id", "position"])
    assert len(offline) > 0
    np.testing.assert_allclose(offline["p_hallucinated_y"], offline["p_hallucinated_x"], rtol=1e-6, atol=1e-7)
    assert open_traces(tmp_path / "online").manifest["detector"]["feature_set"] == "all"


def test_calibration_reports_rates_on_data_it_was_not_tuned_on(traces: dict[str, Path]) -> None:
    """Regression: the catch / false-rejection rates were measured on the traces the rule was
    tuned on. They are measured on held-out images (or --eval-traces), and say which."""
    bound = 0.05
    t = open_traces(traces["test"])
    cal = calibrate(t, max_false_rejection=bound)
    assert cal["tuning"]["false_rejection_rate"] <= bound  # the bound holds where the rule was chosen
    assert set(cal) >= {"model", "alpha", "window", "target_layers", "catch_rate", "false_rejection_rate", "n"}
    assert cal["evaluated_on"]["data"] == "held-out images"
    images = set(t.pandas("samples")["image_id"])
    assert cal["evaluated_on"]["images"] == len(images) // 2
    assert cal["n"]["answers"] + cal["tuning"]["n"]["answers"] == len(images)
    for key in ("catch_rate", "false_rejection_rate"):
        e = cal["intervals"][key]
        assert e["ci_low"] <= e["value"] == cal[key] <= e["ci_high"]
    other = calibrate(t, max_false_rejection=bound, eval_traces=open_traces(traces["held"]))
    assert other["evaluated_on"]["data"] == "eval traces"
    measured = evaluate_rule(open_traces(traces["held"]), other)
    assert other["catch_rate"] == measured["catch_rate"]
    assert other["false_rejection_rate"] == measured["false_rejection_rate"]
    held = evaluate_rule(open_traces(traces["held"]), cal)
    n = open_traces(traces["held"]).pandas("tokens").query("mention_start and label == 'correct'").shape[0]
    # the property, with the sampling error of a share estimated on n correct mention starts
    assert held["false_rejection_rate"] <= bound + 2 * math.sqrt(bound * (1 - bound) / n)


def test_the_papers_pattern_is_measured(traces: dict[str, Path]) -> None:
    t = open_traces(traces["test"])
    scores = mention_scores(t)
    table = saliency_by_label(scores)
    assert table["saliency"]["correct"]["n"] + table["saliency"]["hallucinated"]["n"] == len(scores)
    deciles = rate_by_decile(scores)
    assert deciles["n"].sum() == len(scores) and len(deciles) == 10
    assert (deciles["ci_low"] <= deciles["rate"]).all() and (deciles["rate"] <= deciles["ci_high"]).all()


def test_verify_reports_every_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lvsal_data.commands import VerifyConfig, verify

    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "cache"))
    result = verify(VerifyConfig(data="synthetic:split=test,n=6", out=str(tmp_path / "v"), limit=6, max_new_tokens=12,
                                 batch_size="3"),
                    progress=False)
    m = json.loads((tmp_path / "v" / "metrics.json").read_text())
    for d in ("greedy", "sgrs", "locore", "sgrs+locore"):
        assert m[d]["n"] == 6
        for key in ("chair_s", "chair_i", "recall", "length"):
            assert set(m[d][key]) == {"value", "ci_low", "ci_high"}
    for d in ("sgrs", "locore", "sgrs+locore"):
        assert set(m["vs_greedy"][d]["chair_s"]) == {"value", "ci_low", "ci_high", "p_value"}
    assert 0 <= m["sgrs"]["sgrs_rejection_rate"] <= 1
    report = (tmp_path / "v" / "report.md").read_text()
    assert "| greedy | 6 |" in report and "vs greedy" in report
    assert (tmp_path / "v" / "effects.png").exists() and result.metrics["greedy"]["n"] == 6


def test_verify_never_reports_old_traces_under_new_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: a second verify into the same folder with other data or parameters reported the
    first run's traces under the new header. A non-empty --out needs --resume, and resuming checks
    every decoding's settings."""
    from lvsal_data.cli import main

    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "cache"))
    out = str(tmp_path / "v")
    args = ["verify", "--data", "synthetic:split=test,n=2", "--out", out, "--decodings", "greedy,locore",
            "--max-new-tokens", "6"]
    assert main(args) == 0
    first = json.loads((tmp_path / "v" / "metrics.json").read_text())
    capsys.readouterr()
    assert main([*args[:2], "synthetic:split=test,n=2,seed=5", *args[3:]]) == 2
    assert "not empty; pass --resume" in capsys.readouterr().err
    assert main([*args, "--resume", "--locore-beta", "0.9"]) == 2
    assert "settings differ from the original run in locore_beta" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # the same settings: the finished traces are reused
    again = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert again["greedy"]["chair_s"] == first["greedy"]["chair_s"] and again["locore"]["n"] == 2


def test_verify_compares_the_guided_decoding(fitted: tuple[dict, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from lvsal_data.commands import VerifyConfig, verify

    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "cache"))
    _, out = fitted
    verify(VerifyConfig(data="synthetic:split=test,n=6", out=str(tmp_path / "v"), max_new_tokens=16, batch_size="3",
                        decodings=["greedy", "sgrs", "guided"], detector=str(out / "detector.json"),
                        lookback_heads=True, hidden_states=True, hidden_dim=16, guided_when="every"),
           progress=False)
    m = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert m["guided"]["n"] == 6 and set(m["vs_greedy"]) == {"sgrs", "guided"}
    assert set(m["vs_greedy"]["guided"]["chair_s"]) == {"value", "ci_low", "ci_high", "p_value"}
    assert m["guided"]["guided_intervention_rate"] > 0  # every step with two eligible candidates
    assert 0 <= m["guided"]["guided_replacement_rate"] <= m["guided"]["guided_intervention_rate"]
    assert "the detector chose among the candidates" in (tmp_path / "v" / "report.md").read_text()
    # a candidate is scored from the very row the collector writes once it is emitted
    tokens = open_traces(tmp_path / "v" / "traces" / "guided").pandas("tokens")
    chosen = tokens[tokens["guided_intervened"].fillna(False).astype(bool)]
    assert len(chosen) > 0 and tokens["p_hallucinated"].notna().all()
    np.testing.assert_allclose(chosen["guided_p_chosen"], chosen["p_hallucinated"], rtol=1e-5, atol=1e-7)
