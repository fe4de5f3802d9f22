"""``lvsal fit-detector``: cross-validate hallucination detectors on every feature set and save one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .options import Command


def _feature_sets() -> list[str]:
    from lvsal_data.features import FEATURE_SETS

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
    eval_traces: str | None = field(default=None, metadata={
        "help": "another trace dataset (source, split or decoding): score each set's detector, fitted on all of "
                "--traces, there and report the drop (its cross-validated AUROC minus that one)"})


def fit_detectors(traces_dir: str | Path, out: str | Path, features: str = "all", model: str = "logistic",
                  n_splits: int = 5, random_state: int = 0, progress: bool = True,
                  eval_traces: str | Path | None = None) -> dict[str, Any]:
    """Cross-validate a detector on every feature set the traces hold (folds grouped by image),
    rank the sets, and save the one fitted on ``features`` to ``out/detector.json``; writes
    ``report.json`` and ``roc.png``.

    With ``eval_traces``, each set's detector fitted on all of ``traces_dir`` also scores that
    dataset: the report's ``transfer`` gives its AUROC / AUPRC there and the drop (the
    cross-validated AUROC minus that one; positive: accuracy lost), with a bootstrap CI (the two
    datasets resampled independently).

    Returns:
        The report: feature set -> AUROC / AUPRC with CIs, counts and rank; ``ranking``;
        ``transfer`` (with ``eval_traces``); ``meta``.

    Raises:
        InputError: Too few images or mention starts of either label for grouped
            cross-validation, or an unknown / unavailable feature set (nothing is written).
    """
    import math

    import numpy as np
    from tqdm.auto import tqdm

    from analysis import plots
    from analysis.detectors import HallucinationDetector, cross_validate, save_detector, transfer
    from analysis.features import available_sets, feature_matrix, load_tokens
    from lvsal_data.features import check_available, missing_columns

    from ..errors import InputError
    from ..io import write_json
    from ..store import open_traces

    traces = open_traces(traces_dir)
    data = load_tokens(traces)
    y, groups = np.asarray(data.y), np.asarray(data.groups)
    images = {label: len(np.unique(groups[y == label])) for label in (0, 1)}
    if y.sum() == 0 or y.sum() == len(y) or len(np.unique(groups)) < n_splits or min(images.values()) < 2:
        raise InputError(f"{traces_dir}: too few samples for {n_splits}-fold cross-validation grouped by image: "
                         f"{int(y.sum())} hallucinated and {int(len(y) - y.sum())} correct mention starts in "
                         f"{len(np.unique(groups))} images (need >= {n_splits} images, each label in >= 2); "
                         "collect more samples")
    check_available(data.frame.columns, features, str(traces_dir))  # an unknown name lists the valid ones
    target = load_tokens(open_traces(eval_traces)) if eval_traces is not None else None
    out = Path(out)
    report: dict[str, Any] = {}
    curves = {}
    sets = available_sets(data)
    skipped = {name: missing_columns(data.frame.columns, name) for name in _feature_sets() if name not in sets}
    moved = {}
    for name in tqdm(sets, desc="fit-detector: cross-validating feature sets", unit="set", disable=not progress):
        X, names = feature_matrix(data, name)
        metrics, scores = cross_validate(HallucinationDetector(model=model, random_state=random_state), X, data.y,
                                         data.groups, n_splits=n_splits, random_state=random_state)
        report[name] = {**metrics, "model": model, "n_features": int(X.shape[1])}
        curves[name] = (data.y, scores, metrics)
        if target is not None and name in available_sets(target):
            X_eval, eval_names = feature_matrix(target, name)
            if eval_names != names:
                raise InputError(f"{eval_traces} gives other {name} features than {traces_dir} "
                                 f"({len(eval_names)} vs {len(names)}): traced layers or stored columns differ")
            moved[name] = transfer(HallucinationDetector(model=model, random_state=random_state), X, data.y,
                                   data.groups, scores, X_eval, target.y, target.groups, random_state=random_state)
    ranking = sorted(sets, key=lambda n: -report[n]["auroc"]["value"] if math.isfinite(report[n]["auroc"]["value"])
                     else math.inf)
    for rank, name in enumerate(ranking, start=1):
        report[name]["rank"] = rank
    report["ranking"] = ranking
    if target is not None:
        report["transfer"] = {"eval_traces": str(eval_traces), **moved}
    if not math.isfinite(report[features]["auroc"]["value"]):
        raise InputError(f"{traces_dir}: the out-of-fold AUROC of {features} is undefined (a fold's training part "
                         "held one label only); collect more samples")
    out.mkdir(parents=True, exist_ok=True)
    X, names = feature_matrix(data, features)
    detector = HallucinationDetector(model="logistic", random_state=random_state).fit(X, data.y)
    save_detector(detector, out / "detector.json", features, names,
                  meta={"traces": str(traces.root), "model": traces.manifest["model"]["id"],
                        "layers": traces.layers, "hidden": traces.manifest.get("hidden"), "cv": report[features]})
    report["meta"] = {"traces": str(traces.root), "unit": "object-mention-start tokens", "folds": "grouped by image",
                      "n_splits": n_splits, "saved_detector": features, "skipped_sets": skipped}
    write_json(out / "report.json", report)  # NaN (an undefined CI) as null: always valid JSON
    plots.save(plots.roc_figure(curves), out / "roc.png")
    return report


def run(cfg: FitDetectorConfig) -> int:
    from ..metrics import format_estimate

    report = fit_detectors(cfg.traces, cfg.out, features=cfg.features, model=cfg.model, random_state=cfg.seed,
                           eval_traces=cfg.eval_traces)
    print("feature sets ranked by cross-validated AUROC (folds grouped by image):")
    for name in report["ranking"]:
        r = report[name]
        print(f"{r['rank']:>2}. {name:>15}: AUROC {format_estimate(r['auroc'], scale=1, digits=3)}, "
              f"AUPRC {format_estimate(r['auprc'], scale=1, digits=3)} (n_pos={r['n_pos']}, n_neg={r['n_neg']}, "
              f"{r['n_features']} features)")
    for name, why in report["meta"]["skipped_sets"].items():
        print(f"    {name:>15}: not in these traces ({why})")
    for name, t in report.get("transfer", {}).items():
        if name != "eval_traces":
            print(f"transfer {name:>15}: AUROC {format_estimate(t['auroc'], scale=1, digits=3)} on "
                  f"{cfg.eval_traces}, drop {format_estimate(t['drop'], scale=1, digits=3, signed=True)} "
                  f"(n_pos={t['n_pos']}, n_neg={t['n_neg']})")
    print(f"detector, report and ROC plot: {cfg.out}")
    return 0


COMMAND = Command("fit-detector", "fit hallucination detectors on traces (grouped CV, AUROC/AUPRC with CIs)",
                  FitDetectorConfig, run)
