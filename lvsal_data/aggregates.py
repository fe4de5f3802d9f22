"""Per-token summaries of saliency and attention rows (the trace dataset's columns).

Segments of a query row q (half-open column ranges):

- ``system``: text before the image; ``image``: the image run;
- ``instruction``: text after the image up to the answer;
- ``output``: the answer's tokens before the predicted one, columns answer_start..q
  (empty, i.e. NaN with length 0, for the first answer token).

A union of segments is derivable from means and lengths
(sum of mean x length / total length).

Image-attention statistics, per layer, of the head-mean attention row over the image segment:
its entropy after renormalising over the image tokens (nats; 0 for one image token), its largest
entry, and the mass of its :data:`IMAGE_TOP_K` largest entries (both shares of the whole row).
An empty image segment gives NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .models import Spans
from .schema import SEGMENTS
from .typing import AttentionRows, HeadArray, LayerArray, SaliencyRows, Scores, SegmentArray, SegmentLengths

#: Image tokens whose attention mass ``img_top10`` sums.
IMAGE_TOP_K = 10


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
    img_entropy: LayerArray  # entropy of the head-mean attention renormalised over the image tokens
    img_max: LayerArray  # largest head-mean attention on one image token
    img_top: LayerArray  # head-mean attention mass on the IMAGE_TOP_K most attended image tokens
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
    entropy, peak, top = image_attention(att_mean, spans.image)
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
        img_entropy=entropy, img_max=peak, img_top=top,
        lookback=ratio,
    )


def image_attention(att_mean: torch.Tensor, image: tuple[int, int]) -> tuple[LayerArray, LayerArray, LayerArray]:
    """Entropy over the image tokens, largest entry and top-k mass of ``(layers, q + 1)`` head-mean
    attention rows (see the module doc); NaN for an empty image segment.

    Example:
        >>> att = torch.tensor([[0.1, 0.25, 0.25, 0.4]])
        >>> [round(float(x[0]), 4) for x in image_attention(att, (1, 3))]
        [0.6931, 0.25, 0.5]
    """
    a, b = image
    n_layers = att_mean.shape[0]
    if b <= a:
        nan = np.full(n_layers, np.nan, dtype=np.float32)
        return nan, nan.copy(), nan.copy()
    img = att_mean[:, a:b].double()
    p = img / img.sum(dim=1, keepdim=True).clamp_min(1e-300)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
    top = img.topk(min(IMAGE_TOP_K, b - a), dim=1).values.sum(dim=1)
    return (entropy.numpy().astype(np.float32), img.max(dim=1).values.numpy().astype(np.float32),
            top.numpy().astype(np.float32))


def summary_columns(summary: TokenSummary, logprob: float, entropy: float, hidden: np.ndarray | None = None,
                    lookback: bool = False) -> dict[str, Any]:
    """The tokens table's feature columns of one token, each at the precision it is stored in
    (float32, or float16 for attention masses and statistics, Lookback ratios and hidden states): what a
    detector reads, whether from a written dataset, while collecting, or for a candidate.

    Args:
        summary: The token's summary.
        logprob / entropy: Its log-probability and the entropy of its step's distribution.
        hidden: Its projected hidden states ``(hidden layers, D)``, when the run stores them.
        lookback: Include the per-head Lookback-Lens ratios.
    """
    f32 = np.float32
    row: dict[str, Any] = {"logprob": float(f32(logprob)), "entropy": float(f32(entropy)),
                           "saliency": float(f32(summary.saliency)), "sal_last": summary.sal_last.astype(f32).tolist(),
                           "img_entropy": summary.img_entropy.astype(np.float16).tolist(),
                           "img_max": summary.img_max.astype(np.float16).tolist(),
                           "img_top10": summary.img_top.astype(np.float16).tolist()}
    for k, seg in enumerate(SEGMENTS):
        row[f"sal_{seg}"] = summary.sal[k].astype(f32).tolist()
        row[f"len_{seg}"] = int(summary.lengths[k])
        row[f"att_{seg}"] = summary.att[k].astype(np.float16).tolist()
    if lookback:
        with np.errstate(under="ignore"):  # ratios below float16's range store as 0, as intended
            row["lookback"] = summary.lookback.astype(np.float16).tolist() if summary.lookback is not None else None
    if hidden is not None:
        row["hidden"] = np.asarray(hidden, dtype=np.float16).tolist()
    return row


__all__ = ["IMAGE_TOP_K", "SEGMENTS", "TokenSummary", "eq6_score", "image_attention", "segment_bounds", "summarize",
           "summary_columns"]
