"""The generate-and-trace loop: same tokens as generate(), same rows as teacher forcing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvsal_data import saliency_rows, trace_generate
from lvsal_data.decoding import DECODINGS, AncestralSampling
from lvsal_data.errors import InputError, UnknownNameError
from lvsal_data.testing import TinyLVLM


def test_greedy_trace_equals_generate(tiny: TinyLVLM) -> None:
    inputs, spans = tiny.inputs(n_answer=0)
    trace = trace_generate(tiny.model, inputs, spans, max_new_tokens=8, eos_token_ids=[])
    unused = next(t for t in range(3, 90) if t not in trace.token_ids)  # an EOS neither side meets
    ref = tiny.model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=unused)
    assert trace.token_ids == ref[0, inputs["input_ids"].shape[1] :].tolist()


def test_traced_rows_equal_teacher_forced_rows(tiny: TinyLVLM) -> None:
    inputs, spans = tiny.inputs(n_answer=0)
    trace = trace_generate(tiny.model, inputs, spans, max_new_tokens=5, eos_token_ids=[], keep_rows=True)
    full = tiny.with_answer(inputs, trace.token_ids)
    rows = saliency_rows(tiny.model, full, spans.answer_start)
    for i, tok in enumerate(trace.tokens):
        q = spans.answer_start + i - 1
        np.testing.assert_allclose(tok.summary.sal_last, rows[i, :, q].numpy(), atol=1e-5)
        text = torch.cat([rows[i, :, : spans.image[0]], rows[i, :, spans.image[1] : q + 1]], dim=1).mean(0)
        np.testing.assert_allclose(tok.row.astype(np.float32), text.numpy(), atol=2e-3)  # float16 storage


def test_logprob_and_entropy(tiny: TinyLVLM) -> None:
    inputs, spans = tiny.inputs(n_answer=0)
    trace = trace_generate(tiny.model, inputs, spans, max_new_tokens=3, eos_token_ids=[])
    out = tiny.model(**inputs)
    logp = torch.log_softmax(out.logits[0, -1].float(), -1)
    first = trace.tokens[0]
    assert first.logprob == pytest.approx(float(logp.max()), abs=1e-5)
    assert first.entropy == pytest.approx(float(-(logp.exp() * logp).sum()), abs=1e-4)


def test_stops_at_eos(tiny_models: dict[str, TinyLVLM]) -> None:
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=0)
    first = trace_generate(tiny.model, inputs, spans, max_new_tokens=6, eos_token_ids=[])
    stop_at = first.token_ids[2]
    trace = trace_generate(tiny.model, inputs, spans, max_new_tokens=6, eos_token_ids=[stop_at])
    k = first.token_ids.index(stop_at)
    assert trace.token_ids == first.token_ids[: k + 1] and trace.stopped_by_eos


def test_seeded_sampling_is_reproducible(tiny_models: dict[str, TinyLVLM]) -> None:
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=0)
    runs = [
        trace_generate(tiny.model, inputs, spans, AncestralSampling(), max_new_tokens=8, eos_token_ids=[],
                       generator=torch.Generator().manual_seed(seed)).token_ids
        for seed in (1, 1, 2)
    ]
    assert runs[0] == runs[1] != runs[2]


def test_bad_arguments(tiny_models: dict[str, TinyLVLM]) -> None:
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=0)
    with pytest.raises(InputError, match="max_new_tokens"):
        trace_generate(tiny.model, inputs, spans, max_new_tokens=0)
    with pytest.raises(InputError, match="target layers"):
        trace_generate(tiny.model, inputs, spans, layers=[0], target_layers=[1])
    with pytest.raises(UnknownNameError, match="valid: greedy, locore, sample, sgrs, sgrs\\+locore"):
        DECODINGS["beam"]
