"""Batched tracing: every sample's tokens and rows in a batch equal its batch-1 run.

The contract of the batched engine (``trace_batch``): left padding with the mask carried into
every step, per-sample positions (M-RoPE with different image sizes included), per-sample EOS
(a finished sample leaves the batch), one generator and one decoder state per sample, so a
sample's trace does not depend on which samples share its batch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lvsal_data import saliency_rows, trace_generate
from lvsal_data.config import DecodingOptions
from lvsal_data.decoding import DECODINGS, build_decoder
from lvsal_data.errors import InputError
from lvsal_data.saliency import SaliencyEngine
from lvsal_data.testing import TinyLVLM, stack_inputs, with_grid, write_logit_detector
from lvsal_data.tracing import Trace, trace_batch

STEPS = 4
#: (system, instruction) lengths of the batch's prompts: three different prompt lengths.
SHAPES = [(4, 5), (7, 3), (5, 6)]
#: A detector that prefers the least likely eligible candidate: guided decoding differs from greedy.
DETECTOR = write_logit_detector(Path(tempfile.mkdtemp()) / "detector.json")
OPTIONS = {"sgrs": DecodingOptions(sgrs_alpha=1.0), "sgrs+locore": DecodingOptions(sgrs_alpha=1.0, locore_beta=2.0),
           "locore": DecodingOptions(locore_beta=2.0, locore_window=3),
           "guided": DecodingOptions(detector=str(DETECTOR), guided_when="every", guided_floor=0.0)}


def _samples(tiny: TinyLVLM) -> list[tuple[dict, object]]:
    """Three prompts of different lengths (for Qwen2-VL, the second has another image size)."""
    out = []
    for k, (n_system, n_instruction) in enumerate(SHAPES):
        model = with_grid(tiny, (4, 6)) if tiny.family == "qwen2_vl" and k == 1 else tiny
        out.append(model.inputs(n_system=n_system, n_instruction=n_instruction, n_answer=0, seed=10 + k))
    return out


def _seed(k: int) -> torch.Generator:
    return torch.Generator().manual_seed(100 + k)


def _alone(tiny: TinyLVLM, samples, name: str, **kw) -> list[Trace]:
    return [trace_generate(tiny.model, inputs, spans, build_decoder(name, OPTIONS.get(name)), generator=_seed(k),
                           max_new_tokens=STEPS, keep_rows=True, lookback=True, **kw)
            for k, (inputs, spans) in enumerate(samples)]


def _together(tiny: TinyLVLM, samples, name: str, order=None, **kw) -> list[Trace]:
    """The traces of ``samples[k] for k in order`` traced as one batch, in ``sorted(order)``'s order
    (each sample keeps its own seed whatever its place)."""
    order = list(range(len(samples))) if order is None else order
    inputs, spans = stack_inputs([samples[k] for k in order])
    traces = trace_batch(tiny.model, inputs, spans, [build_decoder(name, OPTIONS.get(name)) for _ in order],
                         generators=[_seed(k) for k in order], max_new_tokens=STEPS, keep_rows=True, lookback=True,
                         **kw)
    return [traces[order.index(k)] for k in sorted(order)]


def _assert_same(batched: Trace, alone: Trace) -> None:
    assert batched.token_ids == alone.token_ids
    assert batched.stopped_by_eos == alone.stopped_by_eos
    for b, a in zip(batched.tokens, alone.tokens):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-5)
        assert b.entropy == pytest.approx(a.entropy, abs=1e-5)
        for name in ("saliency", "sal_last"):
            np.testing.assert_allclose(getattr(b.summary, name), getattr(a.summary, name), atol=1e-5, rtol=0)
        np.testing.assert_allclose(b.summary.sal, a.summary.sal, atol=1e-5, rtol=0)
        np.testing.assert_allclose(b.summary.att, a.summary.att, atol=1e-5, rtol=0)
        np.testing.assert_allclose(b.summary.lookback, a.summary.lookback, atol=1e-5, rtol=0)
        np.testing.assert_allclose(b.row.astype(np.float32), a.row.astype(np.float32), atol=2e-3)  # float16
        assert b.record.keys() == a.record.keys()
        for key, value in a.record.items():
            assert b.record[key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.parametrize("name", sorted(DECODINGS))
def test_batch_equals_batch_one(tiny: TinyLVLM, name: str) -> None:
    samples = _samples(tiny)
    alone = _alone(tiny, samples, name, eos_token_ids=[])
    for batched, single in zip(_together(tiny, samples, name, eos_token_ids=[]), alone):
        _assert_same(batched, single)


def test_a_sample_does_not_depend_on_its_batch(tiny_models) -> None:
    """Seeded SGRS sampling: the same sample traced with other neighbours, in another order."""
    tiny = tiny_models["llava"]
    samples = _samples(tiny)
    first = _together(tiny, samples, "sgrs", eos_token_ids=[])
    shuffled = _together(tiny, samples, "sgrs", order=[2, 0, 1], eos_token_ids=[])
    pair = _together(tiny, samples, "sgrs", order=[2, 1], eos_token_ids=[])
    for a, b in zip(first, shuffled):
        _assert_same(a, b)
    for a, b in zip(first[1:], pair):
        _assert_same(a, b)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_finished_samples_leave_the_batch(tiny_models, family: str) -> None:
    """Per-sample EOS: a sample that stops early stops alone; the others go on unchanged."""
    tiny = tiny_models[family]
    samples = _samples(tiny)
    free = _alone(tiny, samples, "greedy", eos_token_ids=[])
    stop = free[1].token_ids[1]  # sample 1 ends at its second token
    alone = _alone(tiny, samples, "greedy", eos_token_ids=[stop])
    batched = _together(tiny, samples, "greedy", eos_token_ids=[stop])
    assert alone[1].stopped_by_eos and len(alone[1].tokens) <= 2
    for b, a in zip(batched, alone):
        _assert_same(b, a)


def test_growing_cache_equals_the_concatenated_one(tiny: TinyLVLM, monkeypatch) -> None:
    """The fast path's KV cache grows in chunks (:mod:`lvsal_data.kvcache`) instead of copying
    itself every step. With a chunk of 2 its buffers are replaced during the run and a finished
    sample leaves them; every sample's tokens and rows still equal those of transformers'
    concatenating cache, on every family (Gemma 3's sliding-window layers, Qwen2-VL's M-RoPE with
    two image sizes), with SGRS's K candidates per sample in one backward."""
    from lvsal_data import kvcache

    samples = _samples(tiny)
    monkeypatch.setattr(kvcache, "CHUNK", 2)
    appended = []
    append = kvcache.append
    monkeypatch.setattr(kvcache, "append", lambda *args: appended.append(1) or append(*args))
    stop = _together(tiny, samples, "sgrs", eos_token_ids=[])[1].token_ids[1]  # sample 1 ends at its second token
    grown = _together(tiny, samples, "sgrs", eos_token_ids=[stop])
    assert appended, "the growing cache must really be used"
    assert grown[1].stopped_by_eos and len(grown[1].tokens) <= 2
    monkeypatch.setattr(kvcache, "supports", lambda layer: False)  # transformers' own update (torch.cat)
    for a, b in zip(grown, _together(tiny, samples, "sgrs", eos_token_ids=[stop])):
        _assert_same(a, b)


def test_padded_rows_equal_brute_force(tiny: TinyLVLM) -> None:
    """The engine's rows of a padded batch at their absolute columns equal each sample's
    brute-force full-sequence rows, shifted by its padding (padding columns exactly zero)."""
    samples = [tiny.inputs(n_system=n, n_instruction=m, n_answer=3, seed=5 + n) for n, m in SHAPES[:2]]
    inputs, spans = stack_inputs(samples)
    start = spans[0].answer_start
    engine = SaliencyEngine(tiny.model)
    step = engine.start(inputs, start)
    width = inputs["input_ids"].shape[1]
    for i in range(3):
        targets = inputs["input_ids"][:, start + i].reshape(-1, 1)
        rows = step.saliency(targets)[:, 0]  # (batch, layers, q + 1)
        for b, (single, s) in enumerate(samples):
            pad = width - single["input_ids"].shape[1]
            ref = saliency_rows(tiny.model, single, s.answer_start)[i, :, : s.answer_start + i]
            assert torch.all(rows[b, :, :pad] == 0)
            torch.testing.assert_close(rows[b, :, pad:], ref, atol=1e-5, rtol=0)
        if i < 2:
            step = engine.step(targets.flatten())


def test_batch_arguments_are_checked(tiny_models) -> None:
    tiny = tiny_models["llava"]
    inputs, spans = stack_inputs(_samples(tiny)[:2])
    with pytest.raises(InputError, match="2 spans and decoders"):
        trace_batch(tiny.model, inputs, spans[:1], [build_decoder("greedy"), build_decoder("greedy")])
    with pytest.raises(InputError, match="its own decoder"):
        trace_batch(tiny.model, inputs, spans, [build_decoder("sgrs")] * 2)
    with pytest.raises(InputError, match="one class"):
        trace_batch(tiny.model, inputs, spans, [build_decoder("greedy"), build_decoder("sgrs")])
    step = SaliencyEngine(tiny.model).start(inputs)
    with pytest.raises(InputError, match=r"\(batch, K\)"):
        step.saliency([3])
    right = dict(inputs, attention_mask=inputs["attention_mask"].flip(-1))
    with pytest.raises(InputError, match="left-padded"):
        SaliencyEngine(tiny.model).start(right)
