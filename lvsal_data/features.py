"""Feature sets of hallucination detectors: token rows of the tokens table -> a feature matrix.

One definition serves every place a detector meets a token: fitting on a trace dataset
(:mod:`analysis.features`), scoring it offline, scoring each token while it is collected
(``--detector``) and scoring each candidate of a guided decoding step. All of them hand these
functions rows holding the tokens table's columns at their stored precision, so a detector sees
the same numbers wherever it runs. Pure numpy / pandas: no torch.

- ``saliency``: per layer, mean Shat over each segment (system, image, instruction, output), the
  Shat of the preceding token (``sal_last``), and the Eq. 6 score;
- ``attention``: the Lookback-Lens feature, per layer and head context / (context + new)
  attention ratio when ``--lookback-heads`` was stored, else per-layer attention masses;
- ``image_attention``: per layer, the entropy over the image tokens, the largest entry and the
  top-10 mass of the head-mean attention row (:func:`lvsal_data.aggregates.image_attention`);
- ``logit``: log-probability and entropy of the next-token distribution;
- ``hidden``: the stored residual stream (``--hidden-states``), every layer's D numbers;
- ``all``: every set above whose columns the rows hold.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .errors import InputError
from .registry import Registry
from .schema import SEGMENTS
from .typing import FeatureMatrix

FeatureSet = Callable[[pd.DataFrame], tuple[FeatureMatrix, list[str]]]
FEATURE_SETS: Registry[FeatureSet] = Registry("feature set")

#: Columns each built-in feature set needs (a set whose columns a dataset lacks is left out of a
#: report, and refused when asked for by name).
REQUIRES: dict[str, tuple[str, ...]] = {
    "saliency": (*(f"sal_{s}" for s in SEGMENTS), "sal_last", "saliency"),
    "attention": tuple(f"att_{s}" for s in SEGMENTS),
    "image_attention": ("img_entropy", "img_max", "img_top10"),
    "logit": ("logprob", "entropy"),
    "hidden": ("hidden",),
}
#: The sets ``all`` joins, in order.
PARTS = ("saliency", "attention", "image_attention", "logit", "hidden")


def _stack(series: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float64) for v in series]) if len(series) else np.zeros((0, 0))


def _per_layer(df: pd.DataFrame, columns: tuple[str, ...], nan: float | None = None) -> tuple[FeatureMatrix, list[str]]:
    blocks, names = [], []
    for column in columns:
        m = _stack(df[column])
        if nan is not None:
            m = np.nan_to_num(m, nan=nan)
        blocks.append(m)
        names += [f"{column}[{l}]" for l in range(m.shape[1])]
    return np.hstack(blocks), names


def available(columns: set[str] | pd.Index, name: str) -> bool:
    """Whether rows with ``columns`` can give feature set ``name`` (True for a user's own set)."""
    if name == "all":
        return available(columns, "saliency")
    return all(c in columns for c in REQUIRES.get(name, ()))


def missing_columns(columns: set[str] | pd.Index, name: str) -> str:
    """Why rows with ``columns`` cannot give feature set ``name``, in one line ("" if they can)."""
    if available(columns, name):
        return ""
    missing = [c for c in REQUIRES["saliency" if name == "all" else name] if c not in columns]
    hint = {"hidden": " (collect with --hidden-states)",
            "image_attention": " (traces of schema 1.1 or older: collect again)"}.get(name, "")
    return f"lacks {', '.join(missing)}{hint}"


def check_available(columns: set[str] | pd.Index, name: str, where: str) -> None:
    """Refuse a feature set whose columns ``where`` lacks, naming the option that stores them."""
    FEATURE_SETS[name]  # an unknown name lists the valid ones
    why = missing_columns(columns, name)
    if why:
        raise InputError(f"{where} cannot give feature set {name!r}: it {why}")


@FEATURE_SETS.register("saliency")
def saliency_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    m, names = _per_layer(df, tuple(f"sal_{s}" for s in SEGMENTS), nan=0.0)  # an empty segment: no saliency
    last, last_names = _per_layer(df, ("sal_last",))
    return np.hstack([m, last, df[["saliency"]].to_numpy(np.float64)]), [*names, *last_names, "saliency"]


@FEATURE_SETS.register("attention")
def attention_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    if "lookback" in df.columns and df["lookback"].notna().all() and len(df):
        m = np.stack([np.asarray(v.tolist() if hasattr(v, "tolist") else v, dtype=np.float64).reshape(-1)
                      for v in df["lookback"]])
        n_layers = len(df["lookback"].iloc[0])
        heads = m.shape[1] // n_layers
        return m, [f"lookback[{l},{h}]" for l in range(n_layers) for h in range(heads)]
    return _per_layer(df, tuple(f"att_{s}" for s in SEGMENTS))


@FEATURE_SETS.register("image_attention")
def image_attention_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    return _per_layer(df, REQUIRES["image_attention"], nan=0.0)  # no image tokens: nothing attended


@FEATURE_SETS.register("logit")
def logit_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    return df[["logprob", "entropy"]].to_numpy(np.float64), ["logprob", "entropy"]


@FEATURE_SETS.register("hidden")
def hidden_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    if not len(df):
        return np.zeros((0, 0)), []
    m = np.stack([np.concatenate([np.asarray(layer, dtype=np.float64) for layer in v]) for v in df["hidden"]])
    n_layers = len(df["hidden"].iloc[0])
    dim = m.shape[1] // n_layers
    return m, [f"hidden[{l},{d}]" for l in range(n_layers) for d in range(dim)]


@FEATURE_SETS.register("all")
def all_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    parts = [FEATURE_SETS[name](df) for name in PARTS if available(df.columns, name)]
    return np.hstack([p[0] for p in parts]), [n for p in parts for n in p[1]]


__all__ = ["FEATURE_SETS", "PARTS", "REQUIRES", "available", "check_available", "missing_columns"]
