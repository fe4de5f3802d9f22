"""``lvsal fit-detector``: cross-validate hallucination detectors on every feature set and save one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .options import Command


def _feature_sets() -> list[str]:
    from analysis.features import FEATURE_SETS

    return FEATURE_SETS.names()


@dataclass
class FitDetectorConfig:
    traces: str = field(default="", metadata={"help": "trace dataset folder", "required": True})
    out: str = field(default="", metadata={"help": "output folder (detector.json, report.json, roc.png)",
                                           "required": True})
    features: str = field(default="all", metadata={
        "help": "feature set of the saved detector; every set is cross-validated", "choices": _feature_sets})
    model: str = field(default="logistic", metadata={
        "help": "detector family of the cross-validated report (the saved detector is logistic)",
        "choices": lambda: ["logistic", "boosting"]})
    seed: int = field(default=0, metadata={"help": "seed of the folds and the bootstrap"})


def fit_detectors(traces_dir: str | Path, out: str | Path, features: str = "all", model: str = "logistic",
                  n_splits: int = 5, random_state: int = 0, progress: bool = True) -> dict[str, Any]:
    """Cross-validate a detector on every feature set (folds grouped by image) and save the one
    fitted on ``features`` to ``out/detector.json``; writes ``report.json`` and ``roc.png``.

    Returns:
        The report: feature set -> AUROC / AUPRC with CIs and counts, plus ``meta``.

    Raises:
        InputError: Too few images or mention starts of either label for grouped
            cross-validation (nothing is written).
    """
    import math

    import numpy as np
    from tqdm.auto import tqdm

    from analysis import plots
    from analysis.detectors import HallucinationDetector, cross_validate, save_detector
    from analysis.features import FEATURE_SETS, feature_matrix, load_tokens

    from ..errors import InputError
    from ..io import write_json
    from ..store import open_traces

    traces = open_traces(traces_dir)
    FEATURE_SETS[features]  # fail early on an unknown name, listing the valid ones
    data = load_tokens(traces)
    y, groups = np.asarray(data.y), np.asarray(data.groups)
    images = {label: len(np.unique(groups[y == label])) for label in (0, 1)}
    if y.sum() == 0 or y.sum() == len(y) or len(np.unique(groups)) < n_splits or min(images.values()) < 2:
        raise InputError(f"{traces_dir}: too few samples for {n_splits}-fold cross-validation grouped by image: "
                         f"{int(y.sum())} hallucinated and {int(len(y) - y.sum())} correct mention starts in "
                         f"{len(np.unique(groups))} images (need >= {n_splits} images, each label in >= 2); "
                         "collect more samples")
    out = Path(out)
    report: dict[str, Any] = {}
    curves = {}
    for name in tqdm(FEATURE_SETS.names(), desc="fit-detector: cross-validating feature sets", unit="set",
                     disable=not progress):
        X, _ = feature_matrix(data, name)
        metrics, scores = cross_validate(HallucinationDetector(model=model, random_state=random_state), X, data.y,
                                         data.groups, n_splits=n_splits, random_state=random_state)
        report[name] = {**metrics, "model": model, "n_features": int(X.shape[1])}
        curves[name] = (data.y, scores, metrics)
    if not math.isfinite(report[features]["auroc"]["value"]):
        raise InputError(f"{traces_dir}: the out-of-fold AUROC of {features} is undefined (a fold's training part "
                         "held one label only); collect more samples")
    out.mkdir(parents=True, exist_ok=True)
    X, names = feature_matrix(data, features)
    detector = HallucinationDetector(model="logistic", random_state=random_state).fit(X, data.y)
    save_detector(detector, out / "detector.json", features, names,
                  meta={"traces": str(traces.root), "model": traces.manifest["model"]["id"],
                        "layers": traces.layers, "cv": report[features]})
    report["meta"] = {"traces": str(traces.root), "unit": "object-mention-start tokens", "folds": "grouped by image",
                      "n_splits": n_splits, "saved_detector": features}
    write_json(out / "report.json", report)  # NaN (an undefined CI) as null: always valid JSON
    plots.save(plots.roc_figure(curves), out / "roc.png")
    return report


def run(cfg: FitDetectorConfig) -> int:
    from ..metrics import format_estimate

    report = fit_detectors(cfg.traces, cfg.out, features=cfg.features, model=cfg.model, random_state=cfg.seed)
    for name, r in report.items():
        if name != "meta":
            print(f"{name:>9}: AUROC {format_estimate(r['auroc'], scale=1, digits=3)} "
                  f"(n_pos={r['n_pos']}, n_neg={r['n_neg']})")
    print(f"detector, report and ROC plot: {cfg.out}")
    return 0


COMMAND = Command("fit-detector", "fit hallucination detectors on traces (grouped CV, AUROC/AUPRC with CIs)",
                  FitDetectorConfig, run)
