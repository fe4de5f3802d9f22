"""Hallucination detectors on trace features, following scikit-learn's estimator contract.

:class:`HallucinationDetector` is a classifier (scaler + logistic regression by default,
gradient boosting as an option). :func:`cross_validate` scores it with folds grouped by image
(no image in both train and test) and reports AUROC / AUPRC with bootstrap CIs over images.
A fitted logistic detector saves to JSON and loads without pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
from lvsal_data.errors import InputError
from lvsal_data.io import atomic_write_text, read_json
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Tags
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from lvsal_data.scoring import FORMAT
from lvsal_data.stats import bootstrap
from lvsal_data.typing import FeatureMatrix, TokenArray

MODELS = ("logistic", "boosting")


class HallucinationDetector(ClassifierMixin, BaseEstimator):
    """Predicts whether a token is hallucinated from its trace features.

    Args:
        model: ``logistic`` (standard scaler + L2 logistic regression) or ``boosting``
            (histogram gradient boosting).
        C: Inverse regularisation strength of the logistic regression.
        max_iter: Iterations of the solver / boosting rounds.
        class_weight: Passed to the classifier (``balanced`` by default: hallucinations are rare).
        random_state: Seed.
    """

    def __init__(self, model: str = "logistic", C: float = 1.0, max_iter: int = 1000,
                 class_weight: str | None = "balanced", random_state: int = 0) -> None:
        self.model = model
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.random_state = random_state

    def _pipeline(self) -> Pipeline:
        if self.model == "logistic":
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight,
                                     random_state=self.random_state)
        elif self.model == "boosting":
            clf = HistGradientBoostingClassifier(max_iter=min(self.max_iter, 300), class_weight=self.class_weight,
                                                 random_state=self.random_state)
        else:
            raise ValueError(f"unknown detector model {self.model!r}; valid: {', '.join(MODELS)}")
        return Pipeline([("scale", StandardScaler()), ("clf", clf)])

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # hallucinated or not: binary only
        return tags

    def fit(self, X: Any, y: Any) -> "HallucinationDetector":
        """Fit the scaler and classifier.

        Args:
            X: ``(n_tokens, n_features)`` trace features.
            y: ``(n_tokens,)`` labels of two classes (1 = hallucinated).

        Returns:
            The fitted detector.

        Raises:
            ValueError: ``y`` holds one class only, or ``X`` is malformed.
        """
        X, y = validate_data(self, X, y)
        y_type = type_of_target(y, input_name="y")
        if y_type == "multiclass":
            raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}: "
                             f"a detector predicts hallucinated or not, got classes {unique_labels(y).tolist()}")
        self.classes_ = unique_labels(y)
        if len(self.classes_) != 2:
            raise ValueError(f"a detector needs both classes in y, got one class {self.classes_.tolist()}; "
                             "add tokens of the other label")
        self.pipeline_ = self._pipeline().fit(X, y)
        clf = self.pipeline_.steps[-1][1]
        if hasattr(clf, "n_iter_"):  # solver iterations / boosting rounds (a subclass's classifier may have none)
            self.n_iter_ = clf.n_iter_
        return self

    def predict_proba(self, X: Any) -> Annotated[np.ndarray, "tokens classes"]:
        check_is_fitted(self, "pipeline_")
        X = validate_data(self, X, reset=False)
        return self.pipeline_.predict_proba(X)

    def predict(self, X: Any) -> TokenArray:
        check_is_fitted(self, "pipeline_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score_samples(self, X: Any) -> TokenArray:
        """Probability of the hallucinated class."""
        return self.predict_proba(X)[:, 1]


def group_folds(groups: TokenArray, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs with every group (image) on one side only."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 images, got {n_groups}")
    return list(GroupKFold(n_splits=min(n_splits, n_groups)).split(np.zeros(len(groups)), groups=groups))


def out_of_fold(detector: HallucinationDetector, X: FeatureMatrix, y: TokenArray, groups: TokenArray,
                n_splits: int = 5) -> TokenArray:
    """Out-of-fold hallucination probabilities (NaN where a training fold lacks a class)."""
    from sklearn.base import clone

    scores = np.full(len(y), np.nan)
    for train, test in group_folds(groups, n_splits):
        if len(np.unique(y[train])) < 2:
            continue
        scores[test] = clone(detector).fit(X[train], y[train]).score_samples(X[test])
    return scores


def auroc(y: TokenArray, scores: TokenArray) -> float:
    """Area under the ROC curve, ``sklearn.metrics.roc_auc_score``'s value (ties count half) from
    the Mann-Whitney U statistic: the same number, without its per-call validation, which
    dominated the 1000-resample bootstraps. NaN with one class.

    Example:
        >>> auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    from scipy.stats import rankdata

    y = np.asarray(y)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: TokenArray, scores: TokenArray) -> float:
    """``sklearn.metrics.average_precision_score``'s value (sum over the distinct thresholds of
    the recall step times the precision there), computed directly. NaN without positives.

    Example:
        >>> round(average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 4)
        0.8333
    """
    y = np.asarray(y)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    s, labels = np.asarray(scores)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each distinct score
    tps = np.cumsum(labels)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def ranking_metrics(y: TokenArray, scores: TokenArray, groups: TokenArray, *, resamples: int = 1000,
                    random_state: int = 0) -> dict[str, Any]:
    """AUROC and AUPRC with percentile-bootstrap CIs over groups (images), plus counts."""
    ok = np.isfinite(scores)
    y, scores, groups = y[ok], scores[ok], groups[ok]
    out: dict[str, Any] = {"n_pos": int(y.sum()), "n_neg": int((1 - y).sum()), "n_images": int(len(np.unique(groups)))}
    if out["n_pos"] == 0 or out["n_neg"] == 0:
        nan = {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
        return {"auroc": nan, "auprc": dict(nan), **out}

    def statistic(idx: np.ndarray) -> dict[str, float]:
        yb = y[idx]
        if not 0 < yb.sum() < len(yb):  # a resample with one class has no ranking: left out
            return {"auroc": float("nan"), "auprc": float("nan")}
        return {"auroc": auroc(yb, scores[idx]), "auprc": average_precision(yb, scores[idx])}

    out.update(bootstrap(statistic, len(y), groups=groups, resamples=resamples, random_state=random_state))
    out["base_rate"] = float(y.mean())
    return out


def cross_validate(detector: HallucinationDetector, X: FeatureMatrix, y: TokenArray, groups: TokenArray,
                   n_splits: int = 5, random_state: int = 0) -> tuple[dict[str, Any], TokenArray]:
    """Grouped out-of-fold scores and their ranking metrics."""
    scores = out_of_fold(detector, X, y, groups, n_splits)
    return ranking_metrics(y, scores, groups, random_state=random_state), scores


def transfer(detector: HallucinationDetector, X: FeatureMatrix, y: TokenArray, groups: TokenArray,
             oof_scores: TokenArray, X_eval: FeatureMatrix, y_eval: TokenArray, groups_eval: TokenArray, *,
             resamples: int = 1000, random_state: int = 0) -> dict[str, Any]:
    """How a detector fitted on one dataset ranks the tokens of another.

    Fits ``detector`` on all of (X, y), scores ``X_eval`` and returns :func:`ranking_metrics` of
    those scores, plus ``drop``: the cross-validated AUROC (from ``oof_scores``, the out-of-fold
    scores of (X, y)) minus the evaluation AUROC, so positive is accuracy lost on the other
    dataset, with a percentile-bootstrap CI in which each dataset's images are resampled
    independently (they share none).
    """
    from sklearn.base import clone

    from lvsal_data.stats import Resampler

    scores = clone(detector).fit(X, y).score_samples(X_eval)
    out = ranking_metrics(y_eval, scores, groups_eval, resamples=resamples, random_state=random_state)
    ok = np.isfinite(oof_scores)
    source = (y[ok], oof_scores[ok], groups[ok])
    target = (y_eval, scores, groups_eval)

    def area(data: tuple[TokenArray, TokenArray, TokenArray], idx: np.ndarray | None = None) -> float:
        return auroc(data[0], data[1]) if idx is None else auroc(data[0][idx], data[1][idx])

    value = area(source) - area(target)
    rng = np.random.default_rng(random_state)
    rs, rt = Resampler(len(source[0]), source[2]), Resampler(len(target[0]), target[2])
    draws = np.array([area(source, rs.draw(rng)) - area(target, rt.draw(rng)) for _ in range(resamples)])
    finite = draws[np.isfinite(draws)]
    low, high = (np.percentile(finite, [2.5, 97.5]) if finite.size else (float("nan"), float("nan")))
    out["drop"] = {"value": value, "ci_low": float(low), "ci_high": float(high)}
    return out


# --- saving without pickle ----------------------------------------------------------------------

def save_detector(detector: HallucinationDetector, path: str | Path, feature_set: str,
                  feature_names: Sequence[str], meta: dict[str, Any] | None = None) -> Path:
    """Write a fitted logistic detector as JSON (every number needed to score, nothing executable)."""
    check_is_fitted(detector, "pipeline_")
    if detector.model != "logistic":
        raise ValueError("only logistic detectors save to JSON; refit with model='logistic'")
    scale, clf = detector.pipeline_.named_steps["scale"], detector.pipeline_.named_steps["clf"]
    doc = {
        "format": FORMAT, "feature_set": feature_set, "feature_names": list(feature_names),
        "params": detector.get_params(), "classes": detector.classes_.tolist(),
        "scaler": {"mean": scale.mean_.tolist(), "scale": scale.scale_.tolist(), "var": scale.var_.tolist(),
                   "n_samples_seen": int(scale.n_samples_seen_)},
        "logistic": {"coef": clf.coef_.tolist(), "intercept": clf.intercept_.tolist()},
        "meta": meta or {},
    }
    path = Path(path)
    atomic_write_text(path, json.dumps(doc, indent=1))
    return path


def load_detector(path: str | Path) -> tuple[HallucinationDetector, dict[str, Any]]:
    """Load a detector saved by :func:`save_detector`; returns (detector, its JSON document)."""
    path = Path(path)
    doc = read_json(path, what="detector file")
    if doc.get("format") != FORMAT:
        raise InputError(f"{path} is not an lvsal detector (format {doc.get('format')!r}, expected {FORMAT!r})")
    det = HallucinationDetector(**doc["params"])
    pipe = det._pipeline()
    scale, clf = pipe.named_steps["scale"], pipe.named_steps["clf"]
    n = len(doc["feature_names"])
    scale.mean_, scale.scale_, scale.var_ = (np.array(doc["scaler"][k]) for k in ("mean", "scale", "var"))
    scale.n_samples_seen_, scale.n_features_in_ = doc["scaler"]["n_samples_seen"], n
    clf.coef_, clf.intercept_ = np.array(doc["logistic"]["coef"]), np.array(doc["logistic"]["intercept"])
    clf.classes_, clf.n_features_in_ = np.array(doc["classes"]), n
    det.pipeline_, det.classes_, det.n_features_in_ = pipe, np.array(doc["classes"]), n
    return det, doc


def score_traces(detector_path: str | Path, traces_dir: str | Path) -> Any:
    """Hallucination probabilities of a trace dataset's mention starts under a saved detector.

    Returns:
        A DataFrame of the mention starts (sample, image, position, token, object, label) with
        ``p_hallucinated``.

    Raises:
        InputError: The traces give other features than the detector was fitted on.
    """
    from lvsal_data.store import open_traces

    from .features import feature_matrix, load_tokens

    detector, doc = load_detector(detector_path)
    data = load_tokens(open_traces(traces_dir))
    X, names = feature_matrix(data, doc["feature_set"])
    if names != doc["feature_names"]:
        raise InputError(f"{traces_dir} gives features that differ from the detector's "
                         f"({len(names)} vs {len(doc['feature_names'])}): traced layers or stored columns differ")
    frame = data.frame[["sample_id", "image_id", "position", "token", "object", "label"]].copy()
    frame["p_hallucinated"] = detector.score_samples(X)
    return frame
