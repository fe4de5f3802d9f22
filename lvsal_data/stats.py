"""Bootstrap confidence intervals, the shape every reported number takes:
``{"value": v, "ci_low": lo, "ci_high": hi}`` (percentile bootstrap over samples)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

Estimate = dict[str, float]
Statistic = Callable[[np.ndarray], Mapping[str, float]]  # indices -> {metric: value}

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


def _nanpercentile(draws: np.ndarray, q: float) -> float:
    finite = draws[np.isfinite(draws)]
    return float(np.percentile(finite, q)) if finite.size else float("nan")


class Resampler:
    """Draws bootstrap resamples of n samples that come in groups (several POPE questions, or
    several mention starts, of one image): a resample draws whole groups with replacement, so
    the interval reflects the images a result rests on, not its correlated parts.

    Args:
        n: Number of samples.
        groups: Group label of each sample (None: every sample is its own group).
    """

    def __init__(self, n: int, groups: Sequence[Any] | np.ndarray | None = None) -> None:
        if n < 1:
            raise ValueError("cannot bootstrap zero samples")
        if groups is None:
            inverse = np.arange(n)
        else:
            groups = np.asarray(groups)
            if len(groups) != n:
                raise ValueError(f"{len(groups)} group labels for {n} samples")
            inverse = np.unique(groups, return_inverse=True)[1].reshape(-1)
        self.n_groups = int(inverse.max()) + 1
        self._order = np.argsort(inverse, kind="stable")  # sample indices, group by group
        self._sizes = np.bincount(inverse, minlength=self.n_groups)
        self._starts = np.r_[0, np.cumsum(self._sizes)[:-1]]
        self._singletons = bool((self._sizes == 1).all())

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Sample indices of one resample: whole groups drawn with replacement, concatenated."""
        picked = rng.integers(0, self.n_groups, self.n_groups)
        if self._singletons:
            return self._order[picked]
        sizes = self._sizes[picked]
        offsets = np.repeat(self._starts[picked] - np.r_[0, np.cumsum(sizes)[:-1]], sizes)
        return self._order[offsets + np.arange(sizes.sum())]


def _resample(statistic: Statistic, n: int, groups: Sequence[Any] | np.ndarray | None, resamples: int,
              random_state: int) -> tuple[Mapping[str, float], dict[str, np.ndarray]]:
    """The statistic on all n samples, and ``{metric: (resamples,) draws}`` on bootstrap resamples."""
    resampler = Resampler(n, groups)
    point = statistic(np.arange(n))
    rng = np.random.default_rng(random_state)
    draws = {k: np.empty(resamples) for k in point}
    for b in range(resamples):
        est = statistic(resampler.draw(rng))
        for k in point:
            draws[k][b] = est[k]
    return point, draws


def _interval(draws: np.ndarray, level: float) -> dict[str, float]:
    """The percentile interval of bootstrap draws (non-finite draws left out)."""
    alpha = (1 - level) / 2 * 100
    return {"ci_low": _nanpercentile(draws, alpha), "ci_high": _nanpercentile(draws, 100 - alpha)}


def bootstrap(
    statistic: Statistic, n: int, *, groups: Sequence[Any] | np.ndarray | None = None,
    resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, random_state: int = 0,
) -> dict[str, Estimate]:
    """Percentile-bootstrap CIs of several statistics of the same n samples.

    Args:
        statistic: Maps an index array (a resample of ``range(n)``) to ``{metric: value}``;
            a NaN estimate (a degenerate resample) is left out of the interval.
        n: Number of samples.
        groups: Group label of each sample; whole groups (images) are resampled (default:
            each sample is its own group).
        resamples: Bootstrap resamples.
        level: Confidence level.
        random_state: Seed.

    Returns:
        ``{metric: {"value", "ci_low", "ci_high"}}``; the value is the statistic on all samples.

    Example:
        >>> x = np.array([0.0, 1.0, 1.0, 0.0])
        >>> bootstrap(lambda i: {"mean": x[i].mean()}, 4, resamples=50)["mean"]["value"]
        0.5
    """
    point, draws = _resample(statistic, n, groups, resamples, random_state)
    return {k: {"value": float(point[k]), **_interval(draws[k], level)} for k in point}


def paired_difference(
    statistic_a: Statistic, statistic_b: Statistic, n: int, *, groups: Sequence[Any] | np.ndarray | None = None,
    resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, random_state: int = 0,
) -> dict[str, dict[str, float]]:
    """Paired bootstrap of ``a - b`` on the same samples (whole ``groups`` resampled), with a
    two-sided p-value: twice the smaller bootstrap tail mass on either side of zero (capped at 1)."""

    def difference(idx: np.ndarray) -> dict[str, float]:
        ea, eb = statistic_a(idx), statistic_b(idx)
        return {k: ea[k] - eb[k] for k in ea}

    point, diffs = _resample(difference, n, groups, resamples, random_state)
    out = {}
    for k in point:
        d = diffs[k][np.isfinite(diffs[k])]
        p = min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))) if d.size else float("nan")
        out[k] = {"value": float(point[k]), **_interval(diffs[k], level), "p_value": float(p)}
    return out


def ratio(num: np.ndarray, den: np.ndarray) -> float:
    """sum(num) / sum(den), NaN when the denominator is zero."""
    d = den.sum()
    return float(num.sum() / d) if d else float("nan")
