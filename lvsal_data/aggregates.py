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
from torch import Tensor

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
    return summarize_batch(rows[None], attention[None], [spans], query, target, lookback)[0]


def summarize_batch(
    rows: SaliencyRows,
    attention: Tensor,
    spans: Sequence[Spans],
    query: int,
    target: Sequence[int],
    lookback: bool = False,
) -> list[TokenSummary]:
    """:func:`summarize` for the B tokens of one batched step (one query row q, each sample with
    its own spans), in a few tensor operations for the whole batch.

    Every mean and sum over a segment is a float64 product with the segment's 0/1 column mask, so
    a sample's numbers do not depend on the other samples of its batch.

    Args:
        rows: ``(batch, layers, q + 1)`` normalised saliency rows Shat of the B tokens.
        attention: ``(batch, layers, heads, q + 1)`` post-softmax attention rows of query ``q``.
        spans: The B prompts' spans (in the batch's padded coordinates).
        query: The query row q.
        target: Indices into the layers axis for the Eq. 6 score.
        lookback: Also compute the per-head Lookback-Lens ratio.

    Returns:
        One :class:`TokenSummary` per sample.
    """
    bounds = [segment_bounds(s, query) for s in spans]
    lengths = np.array([[b - a for a, b in sample] for sample in bounds], dtype=np.int32)  # (batch, 4)
    masks = _column_masks([[*sample, (s.system[0], s.answer_start)] for sample, s in zip(bounds, spans)], query + 1)
    rows = rows.detach().cpu().double()  # (batch, L, q + 1)
    n = torch.from_numpy(lengths).double()  # (batch, 4)
    sums = rows @ masks[:, :4].transpose(1, 2)  # (batch, L, 4)
    sal = sums / n[:, None, :]  # NaN for an empty segment
    after = (sums[..., 2] + sums[..., 3]) / (n[:, 2] + n[:, 3])[:, None]  # Eq. 6's columns: instruction + output
    saliency = after[:, list(target)].mean(dim=-1)
    attention = attention.detach()
    masks = masks.to(attention.device)
    att_mean = attention.float().mean(dim=2)  # (batch, L, q + 1), head-mean
    att = (att_mean.double() @ masks[:, :4].transpose(1, 2)).cpu()  # (batch, L, 4)
    entropy, peak, top = _image_stats(att_mean, np.array([s.image[0] for s in spans]), lengths[:, 1])
    ratio = None
    if lookback:  # context: system[0]..answer_start (left padding is no context); new: the output segment
        parts = masks[:, [4, 3]]  # (batch, 2, q + 1)
        sums = attention.double().flatten(1, 2) @ parts.transpose(1, 2)  # (batch, L * H, 2)
        means = (sums / parts.sum(dim=-1).clamp_min(1)[:, None, :]).cpu()
        context, new = means[..., 0], means[..., 1]  # new is 0 for an empty output segment
        ratio = (context / (context + new).clamp_min(1e-12)).reshape(attention.shape[:3]).float().numpy()
    sal, att = sal.float().numpy(), att.float().numpy()
    last = rows[..., query].float().numpy()
    return [TokenSummary(sal=sal[b].T.copy(), att=att[b].T.copy(), lengths=lengths[b].copy(), sal_last=last[b],
                         saliency=float(saliency[b]), img_entropy=entropy[b], img_max=peak[b], img_top=top[b],
                         lookback=None if ratio is None else ratio[b])
            for b in range(len(spans))]


def _column_masks(ranges: Sequence[Sequence[tuple[int, int]]], width: int) -> Tensor:
    """``(batch, ranges, width)`` float64 0/1 masks of each sample's half-open column ranges."""
    bounds = torch.tensor(ranges, dtype=torch.long)  # (batch, ranges, 2)
    cols = torch.arange(width)
    return ((cols >= bounds[..., :1]) & (cols < bounds[..., 1:])).double()


def _image_stats(att_mean: Tensor, starts: np.ndarray, n_image: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image entropy, largest entry and top-k mass of ``(batch, L, q + 1)`` head-mean rows over each
    sample's image columns ``starts[b] .. starts[b] + n_image[b]``, as ``(batch, L)`` float32 (NaN
    where a sample's image segment is empty). A shorter image is padded with zero attention, which
    changes none of the three (attention is non-negative)."""
    batch, n_layers = att_mean.shape[:2]
    n = int(n_image.max())
    if n == 0:
        nan = np.full((batch, n_layers), np.nan, dtype=np.float32)
        return nan, nan.copy(), nan.copy()
    offsets = torch.arange(n, device=att_mean.device)
    valid = offsets < torch.as_tensor(n_image, device=att_mean.device)[:, None]  # (batch, n)
    columns = torch.where(valid, torch.as_tensor(starts, device=att_mean.device)[:, None] + offsets, 0)
    img = att_mean.gather(-1, columns[:, None, :].expand(-1, n_layers, -1)) * valid[:, None, :]  # (batch, L, n)
    top = img.topk(min(IMAGE_TOP_K, n), dim=-1).values.double().sum(dim=-1)
    peak = img.amax(dim=-1)
    img = img.double()
    p = img / img.sum(dim=-1, keepdim=True).clamp_min(1e-300)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=-1)
    out = [x.cpu().float().numpy() for x in (entropy, peak, top)]
    for x in out:
        x[n_image == 0] = np.nan
    return out[0], out[1], out[2]


def image_attention(att_mean: torch.Tensor, image: tuple[int, int]) -> tuple[LayerArray, LayerArray, LayerArray]:
    """Entropy over the image tokens, largest entry and top-k mass of ``(layers, q + 1)`` head-mean
    attention rows (see the module doc); NaN for an empty image segment.

    Example:
        >>> att = torch.tensor([[0.1, 0.25, 0.25, 0.4]])
        >>> [round(float(x[0]), 4) for x in image_attention(att, (1, 3))]
        [0.6931, 0.25, 0.5]
    """
    entropy, peak, top = _image_stats(att_mean[None], np.array([image[0]]), np.array([max(image[1] - image[0], 0)]))
    return entropy[0], peak[0], top[0]


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
           "summarize_batch", "summary_columns"]
