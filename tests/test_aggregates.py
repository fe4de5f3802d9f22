"""Per-token summaries follow the data contract's definitions."""

from __future__ import annotations

import math

import numpy as np
import torch

from lvsal_data import saliency_rows
from lvsal_data.aggregates import SEGMENTS, eq6_score, segment_bounds, summarize
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
