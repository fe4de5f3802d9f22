"""Hallucination metrics with bootstrap CIs and sample counts.

CHAIR (Rohrbach et al., 2018; OPERA's protocol): CHAIR_S = share of captions with at least one
hallucinated object; CHAIR_I = hallucinated mentions / all mentions; recall = ground-truth objects
mentioned / ground-truth objects; length = mean answer length in tokens (CHAIR depends on it:
always report it). POPE: accuracy, precision, recall and F1 of "yes", and the yes-ratio, per split.
The bootstrap resamples captions (or questions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .stats import Statistic, bootstrap, ratio

CHAIR_METRICS = ("chair_s", "chair_i", "recall", "length")
POPE_METRICS = ("pope_accuracy", "pope_precision", "pope_recall", "pope_f1", "pope_yes_ratio")


@dataclass(frozen=True)
class CaptionResult:
    """What CHAIR needs from one caption."""

    mentions: Sequence[str]  # category of every object mention, in order (duplicates kept)
    objects: Iterable[str]  # ground-truth categories
    length: int  # answer tokens


def chair_arrays(results: Sequence[CaptionResult]) -> dict[str, np.ndarray]:
    """Per-caption counts: hallucinated mentions, mentions, gt covered, gt, length."""
    rows = []
    for r in results:
        truth = set(r.objects)
        hallucinated = sum(m not in truth for m in r.mentions)
        rows.append((hallucinated, len(r.mentions), len(truth & set(r.mentions)), len(truth), r.length))
    a = np.array(rows, dtype=float).reshape(-1, 5)
    return {"hall": a[:, 0], "mentions": a[:, 1], "covered": a[:, 2], "truth": a[:, 3], "length": a[:, 4]}


def chair_statistic(arrays: dict[str, np.ndarray]) -> Statistic:
    def stat(idx: np.ndarray) -> dict[str, float]:
        return {"chair_s": float(np.mean(arrays["hall"][idx] > 0)),
                "chair_i": ratio(arrays["hall"][idx], arrays["mentions"][idx]),
                "recall": ratio(arrays["covered"][idx], arrays["truth"][idx]),
                "length": float(np.mean(arrays["length"][idx]))}

    return stat


def chair(results: Sequence[CaptionResult], *, resamples: int = 1000, random_state: int = 0) -> dict[str, Any]:
    """CHAIR_S, CHAIR_I, recall and mean length with bootstrap CIs, plus ``n``.

    Example:
        >>> r = [CaptionResult(["dog", "cat"], {"dog"}, 10), CaptionResult(["dog"], {"dog"}, 6)]
        >>> chair(r, resamples=10)["chair_s"]["value"]
        0.5
    """
    if not results:
        raise ValueError("CHAIR needs at least one caption")
    out: dict[str, Any] = bootstrap(chair_statistic(chair_arrays(results)), len(results),
                                    resamples=resamples, random_state=random_state)
    out["n"] = len(results)
    return out


@dataclass(frozen=True)
class YesNoResult:
    """What POPE needs from one answer."""

    predicted: str | None  # "yes" / "no" / None (unparseable: counted as "no", as POPE's script does)
    expected: str
    split: str | None = None


def pope_arrays(results: Sequence[YesNoResult]) -> dict[str, np.ndarray]:
    pred = np.array([r.predicted == "yes" for r in results], dtype=float)
    true = np.array([r.expected == "yes" for r in results], dtype=float)
    return {"pred": pred, "true": true}


def pope_statistic(arrays: dict[str, np.ndarray]) -> Statistic:
    def stat(idx: np.ndarray) -> dict[str, float]:
        p, t = arrays["pred"][idx], arrays["true"][idx]
        tp = float((p * t).sum())
        precision = tp / p.sum() if p.sum() else float("nan")
        recall = tp / t.sum() if t.sum() else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
        return {"pope_accuracy": float((p == t).mean()), "pope_precision": precision, "pope_recall": recall,
                "pope_f1": f1, "pope_yes_ratio": float(p.mean())}

    return stat


def pope(results: Sequence[YesNoResult], *, resamples: int = 1000, random_state: int = 0) -> dict[str, Any]:
    """POPE metrics overall and per split (``by_split``), each with CIs and ``n``."""
    if not results:
        raise ValueError("POPE needs at least one answer")

    def one(rs: Sequence[YesNoResult]) -> dict[str, Any]:
        est: dict[str, Any] = bootstrap(pope_statistic(pope_arrays(rs)), len(rs), resamples=resamples,
                                        random_state=random_state)
        est["n"] = len(rs)
        est["n_unparsed"] = sum(r.predicted is None for r in rs)
        return est

    out = one(results)
    splits = sorted({r.split for r in results if r.split})
    if splits:
        out["by_split"] = {s: one([r for r in results if r.split == s]) for s in splits}
    return out
