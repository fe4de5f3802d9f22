"""Feature sets for hallucination detectors, read from a trace dataset's tokens table.

The sets themselves (``saliency``, ``attention``, ``image_attention``, ``logit``, ``hidden``,
``all``) are defined once in :mod:`lvsal_data.features`, where the collector's online scoring and
the guided decoding read them too; this module selects the token rows they apply to.

Rows are object-mention-start tokens labelled ``correct`` or ``hallucinated`` by default
(``all_tokens=True``: every labelled token of a mention).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow.parquet as pq

from lvsal_data.features import FEATURE_SETS, available, check_available
from lvsal_data.schema import TOKENS
from lvsal_data.store import Traces
from lvsal_data.typing import FeatureMatrix, TokenArray

#: The tokens table's columns a feature set may read: all but the token id, the word and SGRS's records.
BASE_COLUMNS = [n for n in TOKENS.names if n not in ("token_id", "word") and not n.startswith("sgrs_")]
#: Optional columns read when a dataset has them.
OPTIONAL_COLUMNS = ("lookback", "hidden", "p_hallucinated")


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
    paths = traces.paths("tokens")
    names = set(pq.read_schema(paths[0]).names) if paths else set(BASE_COLUMNS)
    columns = [c for c in BASE_COLUMNS if c in names] + [c for c in OPTIONAL_COLUMNS if c in names]
    parts = []
    for table in traces.iter_shards("tokens", columns=columns):
        df = table.to_pandas()
        keep = df["label"].isin(["correct", "hallucinated"])
        if not all_tokens:
            keep &= df["mention_start"]
        parts.append(df[keep])
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return TokenData(frame, (frame["label"] == "hallucinated").to_numpy(int), frame["image_id"].to_numpy())


def feature_matrix(data: TokenData, feature_set: str) -> tuple[FeatureMatrix, list[str]]:
    """``(n_tokens, n_features)`` matrix and feature names of a registered feature set.

    Raises:
        InputError: The dataset lacks the set's columns (say, ``hidden`` without ``--hidden-states``).
    """
    check_available(data.frame.columns, feature_set, "this trace dataset")
    return FEATURE_SETS[feature_set](data.frame)


def available_sets(data: TokenData) -> list[str]:
    """The registered feature sets the dataset's columns can give, in registration order."""
    return [name for name in FEATURE_SETS.names() if available(data.frame.columns, name)]


__all__ = ["BASE_COLUMNS", "FEATURE_SETS", "TokenData", "available_sets", "feature_matrix", "load_tokens"]
