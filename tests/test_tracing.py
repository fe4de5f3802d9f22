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
    with pytest.raises(UnknownNameError, match="valid: greedy, guided, locore, sample, sgrs, sgrs\\+locore"):
        DECODINGS["beam"]


def test_image_attention_and_hidden_states_equal_a_full_forward(tiny: TinyLVLM) -> None:
    """The image-attention columns and the hidden states come from the traced step itself; they
    equal a brute-force forward of the whole sequence (prompt + answer) at each query row."""
    from lvsal_data.aggregates import image_attention
    from lvsal_data.attention import attention_modules, decoder_layers
    from lvsal_data.saliency import SaliencyEngine
    from lvsal_data.tracing import hidden_projection

    inputs, spans = tiny.inputs(n_answer=0)
    n_layers = len(decoder_layers(tiny.model))
    hidden_layers = list(range(n_layers - 1))  # hidden_states[-1] is after the final norm, not a layer's output
    trace = trace_generate(tiny.model, inputs, spans, max_new_tokens=4, eos_token_ids=[], hidden_layers=hidden_layers)
    full = tiny.with_answer(inputs, trace.token_ids)
    with torch.no_grad():
        out = tiny.model(**full, output_attentions=True, output_hidden_states=True)
    traced = sorted(attention_modules(tiny.model))
    by_layer = dict(zip(range(n_layers) if len(out.attentions) == n_layers else traced, out.attentions))
    engine = SaliencyEngine(tiny.model, hidden_layers=hidden_layers)
    step = engine.start(inputs)
    for i, tok in enumerate(trace.tokens):
        q = spans.answer_start + i - 1
        att = torch.stack([by_layer[l][0, :, q, : q + 1].float() for l in trace.layers]).mean(dim=1)
        for got, want in zip((tok.summary.img_entropy, tok.summary.img_max, tok.summary.img_top),
                             image_attention(att, spans.image)):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
        states = torch.stack([out.hidden_states[l + 1][0, q].float() for l in hidden_layers])
        np.testing.assert_allclose(step.hidden[0].numpy(), states.numpy(), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(tok.hidden.astype(np.float32), states.numpy(), rtol=2e-3, atol=1e-3)  # float16
        step = engine.step([tok.token_id])
    projection = hidden_projection(states.shape[-1], 8, seed=0)
    projected = trace_generate(tiny.model, inputs, spans, max_new_tokens=1, eos_token_ids=[],
                               hidden_layers=[0], hidden_projection=projection).tokens[0].hidden
    first = out.hidden_states[1][0, spans.answer_start - 1].float() @ projection
    np.testing.assert_allclose(projected[0].astype(np.float32), first.numpy(), rtol=2e-3, atol=1e-3)
