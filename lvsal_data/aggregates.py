"""Per-token summaries of saliency and attention rows (the trace dataset's columns).

Segments of a query row q (half-open column ranges):

- ``system``: text before the image; ``image``: the image run;
- ``instruction``: text after the image up to the answer;
- ``output``: the answer's tokens before the predicted one, columns answer_start..q
  (empty, i.e. NaN with length 0, for the first answer token).

A union of segments is derivable from means and lengths
(sum of mean x length / total length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .models import Spans
from .schema import SEGMENTS
from .typing import AttentionRows, HeadArray, LayerArray, SaliencyRows, Scores, SegmentArray, SegmentLengths


def segment_bounds(spans: Spans, query: int) -> list[tuple[int, int]]:
    """Column ranges of the four segments for query row ``query``."""
    a0 = spans.answer_start
    if query < a0 - 1:
        raise ValueError(f"query row {query} lies before the last prompt token {a0 - 1}")
    return [spans.system, spans.image, spans.instruction, (a0, query + 1)]


def eq6_score(rows: SaliencyRows, spans: Spans, target: Sequence[int]) -> Scores:
    """The paper's per-token score (Eq. 6): mean over target layers of the mean of Shat over
    the columns after the image up to the query (instruction + output).

    Args:
        rows: ``(..., layers, q + 1)`` normalised saliency rows.
        spans: Prompt spans.
        target: Indices into the ``layers`` axis.

    Returns:
        ``(...)`` scores.
    """
    start = spans.image[1]
    return rows[..., list(target), start:].mean(dim=-1).mean(dim=-1)


@dataclass
class TokenSummary:
    """Every per-token number of the data contract, for one generated token.

    Arrays are float32; ``sal`` and ``att`` are ``(4, layers)`` in :data:`SEGMENTS` order.
    """

    sal: SegmentArray  # mean of Shat over each segment (NaN if empty)
    att: SegmentArray  # attention mass on each segment, head-mean
    lengths: SegmentLengths
    sal_last: LayerArray  # Shat at column q (the immediately preceding token)
    saliency: float  # Eq. 6 over the target layers
    lookback: HeadArray | None = None  # context / (context + new) attention ratio


def summarize(
    rows: SaliencyRows,
    attention: AttentionRows,
    spans: Spans,
    query: int,
    target: Sequence[int],
    lookback: bool = False,
) -> TokenSummary:
    """Summarise one token's saliency rows and attention rows.

    Args:
        rows: ``(layers, q + 1)`` normalised saliency rows Shat of the token.
        attention: ``(layers, heads, q + 1)`` post-softmax attention rows of query ``q``.
        spans: Prompt spans.
        query: The query row q (the token's position minus one).
        target: Indices into the layers axis for the Eq. 6 score.
        lookback: Also compute the per-head Lookback-Lens ratio.
    """
    rows = rows.float().cpu()
    attention = attention.float().cpu()
    bounds = segment_bounds(spans, query)
    n_layers = rows.shape[0]
    sal = np.full((4, n_layers), np.nan, dtype=np.float32)
    att = np.zeros((4, n_layers), dtype=np.float32)
    att_mean = attention.mean(dim=1)  # (L, q + 1)
    lengths = np.array([b - a for a, b in bounds], dtype=np.int32)
    for k, (a, b) in enumerate(bounds):
        if b > a:
            sal[k] = rows[:, a:b].mean(dim=1).numpy()
            att[k] = att_mean[:, a:b].sum(dim=1).numpy()
    ratio = None
    if lookback:
        a0 = spans.answer_start
        context = attention[..., spans.system[0] : a0].mean(dim=-1)  # (L, H); left padding is no context
        new = attention[..., a0 : query + 1].mean(dim=-1) if query + 1 > a0 else torch.zeros_like(context)
        ratio = (context / (context + new).clamp_min(1e-12)).numpy().astype(np.float32)
    return TokenSummary(
        sal=sal,
        att=att,
        lengths=lengths,
        sal_last=rows[:, query].numpy().astype(np.float32),
        saliency=float(eq6_score(rows, spans, target)),
        lookback=ratio,
    )


__all__ = ["SEGMENTS", "TokenSummary", "eq6_score", "segment_bounds", "summarize"]
