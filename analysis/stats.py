"""Bootstrap confidence intervals, the shape every reported number takes:
``{"value": v, "ci_low": lo, "ci_high": hi}`` (percentile bootstrap over samples)."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

Estimate = dict[str, float]
Statistic = Callable[[np.ndarray], Mapping[str, float]]  # indices -> {metric: value}

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


def _nanpercentile(draws: np.ndarray, q: float) -> float:
    finite = draws[np.isfinite(draws)]
    return float(np.percentile(finite, q)) if finite.size else float("nan")


def bootstrap(
    statistic: Statistic, n: int, *, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
    random_state: int = 0,
) -> dict[str, Estimate]:
    """Percentile-bootstrap CIs of several statistics of the same n samples.

    Args:
        statistic: Maps an index array (a resample of ``range(n)``) to ``{metric: value}``.
        n: Number of samples (the unit resampled, e.g. one caption).
        resamples: Bootstrap resamples.
        level: Confidence level.
        random_state: Seed.

    Returns:
        ``{metric: {"value", "ci_low", "ci_high"}}``; the value is the statistic on all samples.
    """
    if n < 1:
        raise ValueError("cannot bootstrap zero samples")
    point = statistic(np.arange(n))
    rng = np.random.default_rng(random_state)
    draws = {k: np.empty(resamples) for k in point}
    for b in range(resamples):
        est = statistic(rng.integers(0, n, n))
        for k in point:
            draws[k][b] = est[k]
    alpha = (1 - level) / 2 * 100
    return {k: {"value": float(point[k]), "ci_low": _nanpercentile(draws[k], alpha),
                "ci_high": _nanpercentile(draws[k], 100 - alpha)} for k in point}


def paired_difference(
    statistic_a: Statistic, statistic_b: Statistic, n: int, *, resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL, random_state: int = 0,
) -> dict[str, dict[str, float]]:
    """Paired bootstrap of ``a - b`` on the same samples, with a two-sided p-value.

    The p-value is twice the smaller bootstrap tail mass on either side of zero (capped at 1).
    """
    point_a, point_b = statistic_a(np.arange(n)), statistic_b(np.arange(n))
    rng = np.random.default_rng(random_state)
    diffs = {k: np.empty(resamples) for k in point_a}
    for b in range(resamples):
        idx = rng.integers(0, n, n)
        ea, eb = statistic_a(idx), statistic_b(idx)
        for k in point_a:
            diffs[k][b] = ea[k] - eb[k]
    alpha = (1 - level) / 2 * 100
    out = {}
    for k in point_a:
        d = diffs[k][np.isfinite(diffs[k])]
        p = min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))) if d.size else float("nan")
        out[k] = {"value": float(point_a[k] - point_b[k]), "ci_low": _nanpercentile(diffs[k], alpha),
                  "ci_high": _nanpercentile(diffs[k], 100 - alpha), "p_value": float(p)}
    return out


def ratio(num: np.ndarray, den: np.ndarray) -> float:
    """sum(num) / sum(den), NaN when the denominator is zero."""
    d = den.sum()
    return float(num.sum() / d) if d else float("nan")
