"""The analysis commands as functions: fit detectors, score new traces, calibrate SGRS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from lvsal_data.errors import InputError
from lvsal_data.io import atomic_write_text
from lvsal_data.store import open_traces

from . import plots
from .calibration import calibrate
from .detectors import HallucinationDetector, cross_validate, load_detector, save_detector
from .features import FEATURE_SETS, feature_matrix, load_tokens


def fit_detectors(traces_dir: str | Path, out: str | Path, features: str = "all", model: str = "logistic",
                  n_splits: int = 5, random_state: int = 0) -> dict[str, Any]:
    """Cross-validate a detector on every feature set (folds grouped by image) and save the one
    fitted on ``features`` to ``out/detector.json``; writes ``report.json`` and ``roc.png``."""
    traces = open_traces(traces_dir)
    FEATURE_SETS[features]  # fail early on an unknown name, listing the valid ones
    data = load_tokens(traces)
    if data.y.sum() == 0 or data.y.sum() == len(data.y):
        raise InputError(f"{traces_dir}: detectors need hallucinated and correct mention starts "
                         f"(got {int(data.y.sum())} of {len(data.y)} hallucinated); collect more samples")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    curves = {}
    for name in FEATURE_SETS.names():
        X, _ = feature_matrix(data, name)
        metrics, scores = cross_validate(HallucinationDetector(model=model, random_state=random_state), X, data.y,
                                         data.groups, n_splits=n_splits, random_state=random_state)
        report[name] = {**metrics, "model": model, "n_features": int(X.shape[1])}
        curves[name] = (data.y, scores, metrics)
    X, names = feature_matrix(data, features)
    detector = HallucinationDetector(model="logistic", random_state=random_state).fit(X, data.y)
    save_detector(detector, out / "detector.json", features, names,
                  meta={"traces": str(traces.root), "model": traces.manifest["model"]["id"],
                        "layers": traces.layers, "cv": report[features]})
    report["meta"] = {"traces": str(traces.root), "unit": "object-mention-start tokens", "folds": "grouped by image",
                      "n_splits": n_splits, "saved_detector": features}
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    plots.save(plots.roc_figure(curves), out / "roc.png")
    return report


def score_traces(detector_path: str | Path, traces_dir: str | Path) -> pd.DataFrame:
    """Hallucination probabilities of a new trace dataset's mention starts under a saved detector."""
    detector, doc = load_detector(detector_path)
    data = load_tokens(open_traces(traces_dir))
    X, names = feature_matrix(data, doc["feature_set"])
    if names != doc["feature_names"]:
        raise InputError(f"{traces_dir} gives features that differ from the detector's "
                         f"({len(names)} vs {len(doc['feature_names'])}): traced layers or stored columns differ")
    frame = data.frame[["sample_id", "image_id", "position", "token", "object", "label"]].copy()
    frame["p_hallucinated"] = detector.score_samples(X)
    return frame


def calibrate_to_file(traces_dir: str | Path, out: str | Path, max_false_rejection: float = 0.05,
                      eval_traces: str | Path | None = None, holdout: float = 0.5, seed: int = 0) -> dict[str, Any]:
    held = open_traces(eval_traces) if eval_traces is not None else None
    result = calibrate(open_traces(traces_dir), max_false_rejection=max_false_rejection, eval_traces=held,
                       holdout=holdout, seed=seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1))
    return result


