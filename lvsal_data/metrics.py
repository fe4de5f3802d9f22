"""Hallucination metrics with bootstrap CIs and sample counts.

CHAIR (Rohrbach et al., 2018; OPERA's protocol): CHAIR_S = share of captions with at least one
hallucinated object; CHAIR_I = hallucinated mentions / all mentions; recall = ground-truth objects
mentioned / ground-truth objects; length = mean answer length in tokens (CHAIR depends on it:
always report it). POPE: accuracy, precision, recall and F1 of "yes", and the yes-ratio, per split;
answers are read by POPE's own rule (:mod:`lvsal_data.yesno`) unless ``rule="strict"``.
The bootstrap resamples images: a caption's, or every question asked about one image together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .yesno import REFERENCE, STRICT, parse_yes_no

from .stats import Statistic, bootstrap, ratio

CHAIR_METRICS = ("chair_s", "chair_i", "recall", "length")
POPE_METRICS = ("pope_accuracy", "pope_precision", "pope_recall", "pope_f1", "pope_yes_ratio")


@dataclass(frozen=True)
class CaptionResult:
    """What CHAIR needs from one caption."""

    mentions: Sequence[str]  # category of every object mention, in order (duplicates kept)
    objects: Iterable[str]  # ground-truth categories
    length: int  # answer tokens, the end-of-sequence token not counted
    image_id: str | None = None  # the bootstrap's unit (None: this caption alone)


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
    out: dict[str, Any] = bootstrap(chair_statistic(chair_arrays(results)), len(results), groups=image_groups(results),
                                    resamples=resamples, random_state=random_state)
    out["n"] = len(results)
    return out


def image_groups(results: Sequence[CaptionResult] | Sequence[YesNoResult]) -> list[Any] | None:
    """The bootstrap's groups: each result's image (a result without one is its own group)."""
    if all(r.image_id is None for r in results):
        return None
    return [r.image_id if r.image_id is not None else f"\0{k}" for k, r in enumerate(results)]


@dataclass(frozen=True)
class YesNoResult:
    """What POPE needs from one answer."""

    answer: str  # the model's answer, as generated
    expected: str  # "yes" / "no"
    split: str | None = None
    image_id: str | None = None  # questions about one image are resampled together


def pope_arrays(results: Sequence[YesNoResult], rule: str = REFERENCE) -> dict[str, np.ndarray]:
    """Predicted and true "yes" per answer; a strict reading that parses nothing counts as "no"."""
    pred = np.array([parse_yes_no(r.answer, rule) == "yes" for r in results], dtype=float)
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


def pope(results: Sequence[YesNoResult], *, rule: str = REFERENCE, resamples: int = 1000,
         random_state: int = 0) -> dict[str, Any]:
    """POPE metrics overall and per split (``by_split``), each with CIs, ``n``, ``n_images`` and
    ``n_unparsed`` (answers the strict first-word reading cannot parse, whatever ``rule`` scores).

    Args:
        results: One per question.
        rule: How answers are read: ``reference`` (POPE's script, the default) or ``strict``.
        resamples: Bootstrap resamples (images are resampled).
        random_state: Seed.

    Example:
        >>> rs = [YesNoResult("Yes.", "yes", image_id="1"), YesNoResult("There is no cat.", "no", image_id="1")]
        >>> pope(rs, resamples=10)["pope_accuracy"]["value"]
        1.0
    """
    if not results:
        raise ValueError("POPE needs at least one answer")

    def one(rs: Sequence[YesNoResult]) -> dict[str, Any]:
        est: dict[str, Any] = bootstrap(pope_statistic(pope_arrays(rs, rule)), len(rs), groups=image_groups(rs),
                                        resamples=resamples, random_state=random_state)
        est["n"] = len(rs)
        est["n_images"] = len({r.image_id for r in rs}) if image_groups(rs) is not None else len(rs)
        est["n_unparsed"] = sum(parse_yes_no(r.answer, STRICT) is None for r in rs)
        est["rule"] = rule
        return est

    out = one(results)
    splits = sorted({r.split for r in results if r.split})
    if splits:
        out["by_split"] = {s: one([r for r in results if r.split == s]) for s in splits}
    return out


def caption_results(samples: Any) -> list[CaptionResult]:
    """CHAIR inputs from a trace dataset's samples table (pandas): the length leaves out the
    end-of-sequence token, which is not part of the caption."""
    return [CaptionResult(list(r.mentions), list(r.objects), int(r.n_tokens) - int(bool(r.stopped_by_eos)),
                          str(r.image_id)) for r in samples.itertuples()]


def yesno_results(samples: Any) -> list[YesNoResult]:
    """POPE inputs from a trace dataset's samples table (pandas)."""
    return [YesNoResult(str(r.answer), str(r.expected), r.split, str(r.image_id)) for r in samples.itertuples()]


def format_estimate(e: dict[str, float], scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
    """``value [ci_low, ci_high]`` of an estimate, scaled (100: percentages, 1: scores).

    Example:
        >>> format_estimate({"value": 0.5, "ci_low": 0.25, "ci_high": 0.75})
        '50.0 [25.0, 75.0]'
        >>> format_estimate({"value": -0.012, "ci_low": -0.02, "ci_high": 0.001}, signed=True)
        '-1.2 [-2.0, +0.1]'
    """
    f = f"{{:{'+' if signed else ''}.{digits}f}}".format
    return f"{f(scale * e['value'])} [{f(scale * e['ci_low'])}, {f(scale * e['ci_high'])}]"
