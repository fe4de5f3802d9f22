"""Per-token summaries follow the data contract's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lvsal_data import saliency_rows
from lvsal_data.aggregates import IMAGE_TOP_K, SEGMENTS, eq6_score, segment_bounds, summarize, summarize_batch
from lvsal_data.models import Spans
from lvsal_data.saliency import SaliencyEngine
from lvsal_data.testing import TinyLVLM


def _summary_at(tiny: TinyLVLM, i: int, lookback: bool = False):
    inputs, spans = tiny.inputs(n_answer=5)
    rows = saliency_rows(tiny.model, inputs, spans.answer_start)
    q = spans.answer_start + i - 1
    step = SaliencyEngine(tiny.model).start(inputs, q + 1)
    return rows[i, :, : q + 1], step.attention[0], spans, q, step


def test_segments_cover_the_causal_row(tiny: TinyLVLM) -> None:
    _, _, spans, q, _ = _summary_at(tiny, 3)
    bounds = segment_bounds(spans, q)
    assert [a for a, _ in bounds][0] == 0 and bounds[-1][1] == q + 1
    assert all(bounds[k][1] == bounds[k + 1][0] for k in range(3))
    assert len(bounds) == len(SEGMENTS)


def test_summary_matches_definitions(tiny: TinyLVLM) -> None:
    row, att, spans, q, _ = _summary_at(tiny, 3)
    target = [0, 1]
    s = summarize(row, att, spans, q, target, lookback=True)
    n_img = spans.image[1] - spans.image[0]
    assert s.lengths.tolist() == [spans.system[1], n_img, spans.instruction[1] - spans.instruction[0], 3]
    for k, (a, b) in enumerate(segment_bounds(spans, q)):
        np.testing.assert_allclose(s.sal[k], row[:, a:b].mean(1).numpy(), atol=1e-6)
        np.testing.assert_allclose(s.att[k], att.mean(1)[:, a:b].sum(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(s.att.sum(0), np.ones(row.shape[0]), atol=1e-5)  # a row is a distribution
    np.testing.assert_allclose(s.sal_last, row[:, q].numpy(), atol=1e-7)
    # Eq. 6 = mean over target layers of the mean over columns after the image up to q ...
    direct = np.mean([row[l, spans.image[1] : q + 1].mean().item() for l in target])
    assert math.isclose(s.saliency, direct, rel_tol=1e-6)
    # ... and is derivable from the stored segment means and lengths (the union rule).
    w = s.lengths[2:]
    union = (s.sal[2:, target] * w[:, None]).sum(0) / w.sum()
    assert math.isclose(float(union.mean()), s.saliency, rel_tol=1e-5)
    assert s.lookback.shape == (att.shape[0], att.shape[1])
    assert np.all((s.lookback > 0) & (s.lookback < 1))


def test_first_token_has_an_empty_output_segment(tiny: TinyLVLM) -> None:
    row, att, spans, q, _ = _summary_at(tiny, 0)
    s = summarize(row, att, spans, q, [0], lookback=True)
    assert s.lengths[3] == 0 and np.all(np.isnan(s.sal[3])) and np.all(s.att[3] == 0)
    assert np.all(s.lookback == 1.0)  # no new tokens yet: all attention is on the context


def test_eq6_score_batches_over_candidates(tiny: TinyLVLM) -> None:
    _, _, spans, q, step = _summary_at(tiny, 2)
    rows = step.saliency(step.logits[0].topk(4).indices)
    target = list(range(rows.shape[-2]))[-2:]  # two of the traced layers (hybrid models trace only some)
    scores = eq6_score(rows, spans, target)
    for k in range(4):
        assert torch.isclose(scores[k], eq6_score(rows[k], spans, target))


def test_a_batch_summarises_each_sample_as_alone() -> None:
    """summarize_batch over samples with different spans (left padding; image runs of 25, 14, 3
    tokens, fewer than IMAGE_TOP_K, and none; an empty instruction) gives each sample its
    batch-of-one summary, and that summary follows the definitions on the sample's own columns
    (plain slices and means, as the data contract states them)."""
    g = torch.Generator().manual_seed(0)
    q, target = 60, [1, 2]
    spans = [Spans((0, 5), (5, 30), (30, 40)), Spans((3, 10), (10, 24), (24, 61)), Spans((1, 1), (1, 1), (1, 50)),
             Spans((2, 4), (4, 7), (7, 7))]
    rows = torch.rand(4, 6, q + 1, generator=g)
    rows /= rows.norm(dim=-1, keepdim=True)
    att = torch.rand(4, 6, 4, q + 1, generator=g).softmax(dim=-1)
    batched = summarize_batch(rows, att, spans, q, target, lookback=True)
    for b, s in enumerate(spans):
        alone = summarize(rows[b], att[b], s, q, target, lookback=True)
        for name in ("sal", "att", "lengths", "sal_last", "img_entropy", "img_max", "img_top", "lookback"):
            np.testing.assert_allclose(getattr(batched[b], name), getattr(alone, name), atol=1e-7, rtol=0, err_msg=name)
            assert getattr(batched[b], name).dtype == (np.int32 if name == "lengths" else np.float32)
        assert batched[b].saliency == pytest.approx(alone.saliency, abs=1e-7)
        head_mean = att[b].mean(1)
        for k, (lo, hi) in enumerate(segment_bounds(s, q)):
            want = rows[b, :, lo:hi].mean(1).numpy() if hi > lo else np.full(6, np.nan)
            np.testing.assert_allclose(alone.sal[k], want, atol=1e-6)
            np.testing.assert_allclose(alone.att[k], head_mean[:, lo:hi].sum(1).numpy(), atol=1e-6)
        lo, hi = s.image
        if hi > lo:
            img = head_mean[:, lo:hi].double()
            p = img / img.sum(1, keepdim=True)
            np.testing.assert_allclose(alone.img_entropy, -(p * p.log()).sum(1).numpy(), atol=1e-6)
            np.testing.assert_allclose(alone.img_max, img.max(1).values.numpy(), atol=1e-7)
            np.testing.assert_allclose(alone.img_top, img.topk(min(IMAGE_TOP_K, hi - lo), 1).values.sum(1).numpy(),
                                       atol=1e-6)
        else:
            assert np.all(np.isnan(alone.img_entropy) & np.isnan(alone.img_max) & np.isnan(alone.img_top))
        a0 = s.answer_start
        context = att[b][..., s.system[0] : a0].mean(-1)
        new = att[b][..., a0 : q + 1].mean(-1) if q + 1 > a0 else torch.zeros_like(context)
        np.testing.assert_allclose(alone.lookback, (context / (context + new)).numpy(), atol=1e-6)
        direct = np.mean([rows[b, l, s.image[1] : q + 1].mean().item() for l in target])
        assert math.isclose(alone.saliency, direct, rel_tol=1e-6)
