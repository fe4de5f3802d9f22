"""The paper's pattern, measured on a trace dataset.

- Table 4 analogue: saliency of correct vs hallucinated mention starts (mean, sd, n), for the
  Eq. 6 score and for the preceding token's saliency (``sal_last``, the rebuttal's statistic,
  averaged over the target layers).
- Fig. 8b analogue: hallucination rate per saliency decile, each with a Wilson 95% interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lvsal_data.store import Traces

from .features import TokenData, load_tokens
from lvsal_data.stats import bootstrap


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return float(c - h), float(c + h)


def mention_scores(traces: Traces, data: TokenData | None = None) -> pd.DataFrame:
    """One row per labelled mention start: label, Eq. 6 saliency, preceding-token saliency."""
    data = data or load_tokens(traces)
    df = data.frame
    idx = [traces.layers.index(l) for l in traces.target_layers]
    last = np.stack(df["sal_last"].to_numpy())[:, idx].mean(axis=1) if len(df) else np.zeros(0)
    return pd.DataFrame({"label": df["label"].to_numpy(), "saliency": df["saliency"].to_numpy(float),
                         "sal_last": last, "image_id": df["image_id"].to_numpy()})


def saliency_by_label(scores: pd.DataFrame) -> dict[str, Any]:
    """Mean, sd and n of each statistic for correct and hallucinated mention starts."""
    out: dict[str, Any] = {}
    for stat in ("saliency", "sal_last"):
        out[stat] = {}
        for label in ("correct", "hallucinated"):
            v = scores.loc[scores["label"] == label, stat].to_numpy(float)
            out[stat][label] = {"mean": float(v.mean()) if v.size else float("nan"),
                                "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)}
    return out


def label_difference(scores: pd.DataFrame, stat: str = "saliency", resamples: int = 1000,
                     random_state: int = 0) -> dict[str, Any]:
    """Mean ``stat`` of hallucinated minus correct mention starts, with a bootstrap CI that
    resamples images (mentions of one caption are not independent); negative = the paper's drop."""
    image = scores["image_id"].to_numpy()
    halluc = (scores["label"] == "hallucinated").to_numpy()
    values = scores[stat].to_numpy(float)

    def statistic(rows: np.ndarray) -> dict[str, float]:
        h, c = values[rows][halluc[rows]], values[rows][~halluc[rows]]
        return {"difference": float(h.mean() - c.mean()) if h.size and c.size else float("nan")}

    est = bootstrap(statistic, len(values), groups=image, resamples=resamples, random_state=random_state)["difference"]
    return {**est, "n_images": int(len(pd.unique(image))), "n_hallucinated": int(halluc.sum()),
            "n_correct": int((~halluc).sum())}


def rate_by_decile(scores: pd.DataFrame, stat: str = "saliency", bins: int = 10) -> pd.DataFrame:
    """Hallucination rate of mention starts per quantile bin of ``stat`` (lowest first)."""
    if len(scores) < bins:
        bins = max(1, len(scores))
    ranks = scores[stat].rank(method="first")
    decile = pd.qcut(ranks, bins, labels=False) if bins > 1 else pd.Series(0, index=scores.index)
    rows = []
    for d in range(bins):
        sel = scores[decile == d]
        k, n = int((sel["label"] == "hallucinated").sum()), len(sel)
        lo, hi = wilson(k, n)
        rows.append({"decile": d + 1, "low": float(sel[stat].min()), "high": float(sel[stat].max()), "n": n,
                     "hallucinated": k, "rate": k / n if n else float("nan"), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)
