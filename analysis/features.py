"""Feature sets for hallucination detectors, read from a trace dataset's tokens table.

- ``saliency``: per layer, mean Shat over each segment (system, image, instruction, output), the
  Shat of the preceding token (``sal_last``), and the Eq. 6 score;
- ``attention``: the Lookback-Lens feature, per layer and head context / (context + new)
  attention ratio when ``--lookback-heads`` was stored, else per-layer attention masses;
- ``logit``: log-probability and entropy of the next-token distribution;
- ``all``: everything above.

Rows are object-mention-start tokens labelled ``correct`` or ``hallucinated`` by default
(``all_tokens=True``: every labelled token of a mention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from lvsal_data.registry import Registry
from lvsal_data.schema import SEGMENTS, TOKENS
from lvsal_data.store import Traces
from lvsal_data.typing import FeatureMatrix, TokenArray

FEATURE_SETS: Registry[Callable[[pd.DataFrame], tuple[FeatureMatrix, list[str]]]] = Registry("feature set")

#: The tokens table's columns a feature set may read: all but the token id, the word and SGRS's records.
BASE_COLUMNS = [n for n in TOKENS.names if n not in ("token_id", "word") and not n.startswith("sgrs_")]


@dataclass
class TokenData:
    """Selected token rows with labels and image groups (for grouped cross-validation)."""

    frame: pd.DataFrame
    y: TokenArray  # 1 = hallucinated
    groups: TokenArray  # image ids


def load_tokens(traces: Traces, all_tokens: bool = False) -> TokenData:
    """Mention-start tokens (or all mention tokens) labelled correct / hallucinated.

    Streams shard by shard and keeps only the selected rows.
    """
    columns = [c for c in BASE_COLUMNS]
    names = set()
    for p in traces.paths("tokens")[:1]:
        import pyarrow.parquet as pq

        names = set(pq.read_schema(p).names)
    if "lookback" in names:
        columns.append("lookback")
    parts = []
    for table in traces.iter_shards("tokens", columns=columns):
        df = table.to_pandas()
        keep = df["label"].isin(["correct", "hallucinated"])
        if not all_tokens:
            keep &= df["mention_start"]
        parts.append(df[keep])
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return TokenData(frame, (frame["label"] == "hallucinated").to_numpy(int), frame["image_id"].to_numpy())


def _stack(series: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float64) for v in series]) if len(series) else np.zeros((0, 0))


@FEATURE_SETS.register("saliency")
def saliency_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    blocks, names = [], []
    for seg in SEGMENTS:
        m = np.nan_to_num(_stack(df[f"sal_{seg}"]), nan=0.0)  # an empty segment carries no saliency
        blocks.append(m)
        names += [f"sal_{seg}[{l}]" for l in range(m.shape[1])]
    last = _stack(df["sal_last"])
    blocks.append(last)
    names += [f"sal_last[{l}]" for l in range(last.shape[1])]
    blocks.append(df[["saliency"]].to_numpy(np.float64))
    names.append("saliency")
    return np.hstack(blocks), names


@FEATURE_SETS.register("attention")
def attention_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    if "lookback" in df.columns and df["lookback"].notna().all() and len(df):
        m = np.stack([np.asarray(v.tolist() if hasattr(v, "tolist") else v, dtype=np.float64).reshape(-1)
                      for v in df["lookback"]])
        n_layers = len(df["lookback"].iloc[0])
        heads = m.shape[1] // n_layers
        return m, [f"lookback[{l},{h}]" for l in range(n_layers) for h in range(heads)]
    blocks, names = [], []
    for seg in SEGMENTS:
        m = _stack(df[f"att_{seg}"])
        blocks.append(m)
        names += [f"att_{seg}[{l}]" for l in range(m.shape[1])]
    return np.hstack(blocks), names


@FEATURE_SETS.register("logit")
def logit_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    return df[["logprob", "entropy"]].to_numpy(np.float64), ["logprob", "entropy"]


@FEATURE_SETS.register("all")
def all_features(df: pd.DataFrame) -> tuple[FeatureMatrix, list[str]]:
    parts = [FEATURE_SETS[name](df) for name in ("saliency", "attention", "logit")]
    return np.hstack([p[0] for p in parts]), [n for p in parts for n in p[1]]


def feature_matrix(data: TokenData, feature_set: str) -> tuple[FeatureMatrix, list[str]]:
    """``(n_tokens, n_features)`` matrix and feature names of a registered feature set."""
    return FEATURE_SETS[feature_set](data.frame)
