"""Shape-annotated array types, in one place (jaxtyping's convention, without the dependency).

Each alias is ``Annotated[base, "axes"]``: type checkers see the base type (a torch ``Tensor`` or
a numpy ``ndarray``), readers the axes, named as jaxtyping names them (``*batch`` any leading
axes). Axes used here: ``layers`` traced layers, ``heads`` attention heads, ``keys`` the columns
0..q of a query row, ``segments`` the four of :data:`lvsal_data.schema.SEGMENTS`, ``tokens``
rows of a tokens table, ``features`` columns of a feature set.

This module imports no torch (``Tensor`` is a forward reference), so the analysis layer can use it.

Example:
    >>> from typing import get_args
    >>> get_args(SegmentArray)[1]
    'segments layers'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np

if TYPE_CHECKING:
    import torch

# -- torch tensors (collecting) -------------------------------------------------------------------
#: Normalised saliency rows Shat of one or more tokens.
SaliencyRows = Annotated["torch.Tensor", "*batch layers keys"]
#: Post-softmax attention rows of one query, per head.
AttentionRows = Annotated["torch.Tensor", "layers heads keys"]
#: One score per leading index (Eq. 6 over candidates, say).
Scores = Annotated["torch.Tensor", "*batch"]

# -- numpy arrays (trace rows and analysis) -------------------------------------------------------
#: A per-segment, per-layer summary (mean saliency, attention mass).
SegmentArray = Annotated[np.ndarray, "segments layers"]
#: Segment lengths.
SegmentLengths = Annotated[np.ndarray, "segments"]
#: One value per traced layer.
LayerArray = Annotated[np.ndarray, "layers"]
#: One value per traced layer and head (the Lookback-Lens ratio).
HeadArray = Annotated[np.ndarray, "layers heads"]
#: A detector's input: one row per token, one column per feature.
FeatureMatrix = Annotated[np.ndarray, "tokens features"]
#: One value per token (labels, 1 = hallucinated; scores; image groups).
TokenArray = Annotated[np.ndarray, "tokens"]

__all__ = ["AttentionRows", "FeatureMatrix", "HeadArray", "LayerArray", "SaliencyRows", "Scores", "SegmentArray",
           "SegmentLengths", "TokenArray"]
