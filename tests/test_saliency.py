"""The saliency engine equals brute-force full-sequence autograd, on every tiny architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvsal_data import SaliencyEngine, default_target_layers, saliency_rows
from lvsal_data.errors import InputError, UnsupportedModelError
from lvsal_data.families import self_attention_layers
from lvsal_data.testing import TinyLVLM, tiny_llava

TOL = 1e-5


def brute_force_rows(model, inputs, answer_start: int) -> torch.Tensor:
    """Independent reference: one full-sequence forward, one backward per answer token.

    Row of answer token at position p: query p - 1, loss = -log softmax(logits[p - 1])[y_p],
    S = mean_h |A (.) dL/dA|, L2-normalised over keys 0..p-1.
    The rows are those of the layers with self-attention (the config's; ``out.attentions`` holds
    only them for hybrid models, and Llama 3.2 Vision's cross-attention rows over image tiles besides).
    """
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        out = model(**inputs, output_attentions=True)
        layers = self_attention_layers(model.config)
        attentions = out.attentions if len(out.attentions) == len(layers) else [out.attentions[l] for l in layers]
        ids = inputs["input_ids"][0]
        seq = ids.numel()
        rows = torch.zeros(seq - answer_start, len(attentions), seq)
        for i, p in enumerate(range(answer_start, seq)):
            loss = torch.nn.functional.cross_entropy(out.logits[0, p - 1][None].float(), ids[p][None])
            grads = torch.autograd.grad(loss, attentions, retain_graph=True)
            for layer, (att, grad) in enumerate(zip(attentions, grads)):
                s = (att[0, :, p - 1, :p] * grad[0, :, p - 1, :p]).abs().sum(0)  # sum = mean after norm
                rows[i, layer, :p] = s / s.norm()
        return rows
    finally:
        for p in model.parameters():
            p.requires_grad_(False)


def test_equals_brute_force(tiny: TinyLVLM) -> None:
    inputs, spans = tiny.inputs(n_answer=7)
    got = saliency_rows(tiny.model, inputs, spans.answer_start)
    ref = brute_force_rows(tiny.model, inputs, spans.answer_start)
    seq = inputs["input_ids"].shape[1]
    assert got.shape == (7, len(self_attention_layers(tiny.model.config)), seq)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


def test_rows_are_causal_and_unit_norm(tiny: TinyLVLM) -> None:
    inputs, spans = tiny.inputs(n_answer=4)
    rows = saliency_rows(tiny.model, inputs, spans.answer_start)
    for i in range(rows.shape[0]):
        q = spans.answer_start + i - 1
        assert torch.all(rows[i, :, q + 1 :] == 0)
        torch.testing.assert_close(rows[i].norm(dim=-1), torch.ones(rows.shape[1]))


def test_layer_subset_is_a_slice(tiny: TinyLVLM) -> None:
    inputs, spans = tiny.inputs(n_answer=3)
    full = saliency_rows(tiny.model, inputs, spans.answer_start)
    traced = self_attention_layers(tiny.model.config)
    sub = saliency_rows(tiny.model, inputs, spans.answer_start, layers=[traced[-1], traced[0]])
    torch.testing.assert_close(sub, full[:, [len(traced) - 1, 0]], atol=TOL, rtol=0)


def test_qwen2_vl_positions_are_really_multimodal(tiny_models: dict[str, TinyLVLM]) -> None:
    """Guards the M-RoPE check above: the text after the image is not at arange positions."""
    tiny = tiny_models["qwen2_vl"]
    inputs, _ = tiny.inputs()
    _, deltas = tiny.model.model.get_rope_index(
        inputs["input_ids"], image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"], mm_token_type_ids=inputs["mm_token_type_ids"],
    )
    assert int(deltas.abs().sum()) > 0


def test_batched_candidates_equal_one_by_one(tiny: TinyLVLM) -> None:
    inputs, spans = tiny.inputs(n_answer=3)
    context = spans.answer_start + 2  # a step inside the answer
    step = SaliencyEngine(tiny.model).start(inputs, context)
    candidates = step.logits[0].topk(5).indices
    batched = step.saliency(candidates)
    assert batched.shape[0] == 5
    for k, c in enumerate(candidates):
        single = SaliencyEngine(tiny.model).start(inputs, context).saliency([int(c)])[0]
        torch.testing.assert_close(batched[k], single, atol=TOL, rtol=0)


def test_candidate_rows_equal_teacher_forced_rows(tiny: TinyLVLM) -> None:
    """Scoring candidate c at a step equals the teacher-forced row of an answer ending in c."""
    inputs, spans = tiny.inputs(n_answer=2)
    step = SaliencyEngine(tiny.model).start(inputs, spans.answer_start + 1)
    cand = int(step.logits[0].topk(3).indices[2])
    row = step.saliency([cand])[0]
    forced = dict(inputs)
    ids = inputs["input_ids"].clone()
    ids[0, spans.answer_start + 1] = cand
    forced["input_ids"] = ids
    ref = saliency_rows(tiny.model, forced, spans.answer_start)[1, :, : spans.answer_start + 1]
    torch.testing.assert_close(row, ref, atol=TOL, rtol=0)


def _steps(model, inputs, fast: bool, n: int = 5) -> tuple[list, list, SaliencyEngine]:
    """Logits and K = 5 candidate rows of n greedy steps, on the fast or the plain path."""
    engine = SaliencyEngine(model, fast=fast)
    step = engine.start(inputs)
    logits, rows = [], []
    for _ in range(n):
        candidates = step.logits[0].topk(5).indices
        logits.append(step.logits)
        rows.append(step.saliency(candidates))
        step = engine.step([int(candidates[0])])
    return logits, rows, engine


def test_fast_path_equals_the_plain_path(tiny: TinyLVLM) -> None:
    """The live-row attention (backward skips the cached past) is the plain eager computation:
    the forward bitwise, the rows to float rounding."""
    inputs, _ = tiny.inputs(n_answer=0)
    fast_logits, fast_rows, engine = _steps(tiny.model, inputs, fast=True)
    assert engine.fast, "the fast path must really be taken on every supported family"
    plain_logits, plain_rows, _ = _steps(tiny.model, inputs, fast=False)
    for a, b in zip(fast_logits, plain_logits):
        assert torch.equal(a, b)
    for a, b in zip(fast_rows, plain_rows):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert tiny.model.config.get_text_config()._attn_implementation == "eager"  # restored after each step


def test_fast_path_under_locore_equals_the_plain_path(tiny_models: dict[str, TinyLVLM]) -> None:
    from lvsal_data.decoding import locore

    tiny = tiny_models["llava_gqa"]
    inputs, spans = tiny.inputs(n_answer=0)
    with locore(tiny.model, spans.answer_start, beta=0.5):
        fast_logits, fast_rows, engine = _steps(tiny.model, inputs, fast=True)
        assert engine.fast
        plain_logits, plain_rows, _ = _steps(tiny.model, inputs, fast=False)
    for a, b in zip(fast_logits, plain_logits):
        assert torch.equal(a, b)
    for a, b in zip(fast_rows, plain_rows):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_times_past_is_matmul_with_a_constant_past() -> None:
    """The product with the detached past: forward bitwise ``torch.matmul``; its gradient (single
    and batched over K losses, the SGRS case) equals plain autograd's, which copies the past K times."""
    from lvsal_data.attention import times_past

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 1, 8, generator=g)
    past = torch.randn(1, 4, 8, 30, generator=g)
    cot = torch.randn(5, 1, 4, 1, 30, generator=g)
    x, ref_x = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    out, ref = times_past(x, past), torch.matmul(ref_x, past)
    assert torch.equal(out, ref)
    for batched in (False, True):
        grad_out = cot if batched else cot[0]
        got = torch.autograd.grad(out, x, grad_out, retain_graph=True, is_grads_batched=batched)[0]
        want = torch.autograd.grad(ref, ref_x, grad_out, retain_graph=True, is_grads_batched=batched)[0]
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert torch.equal(times_past(x0, past), torch.matmul(x0, past))  # no graph: plain matmul
    with pytest.raises(ValueError, match="detached"):
        times_past(x, past.clone().requires_grad_(True))


def test_attention_that_ignores_the_live_rows_falls_back_to_the_plain_path(tiny_models, monkeypatch) -> None:
    """A model whose code hides the live rows from the attention function would lose the new
    token's key / value gradient; the engine notices at its first step and takes the plain path."""
    import lvsal_data.attention as attention

    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=4)
    monkeypatch.setattr(attention, "_live", lambda t: None)
    engine = SaliencyEngine(tiny.model)
    engine.start(inputs)
    assert not engine.fast
    got = saliency_rows(tiny.model, inputs, spans.answer_start)
    ref = brute_force_rows(tiny.model, inputs, spans.answer_start)
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


def test_release_indexing_reads_a_zero_gradient_row(tiny_models: dict[str, TinyLVLM]) -> None:
    """The public SGRS code appends the candidate, takes the loss at logits[-2] (correct), but
    reads the saliency on the last row, the candidate's own: its gradient is exactly zero, so
    every candidate scores 0. The emitting row (-2) carries the signal and equals ours."""
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=1)  # the last token is the candidate
    model = tiny.model
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        out = model(**inputs, output_attentions=True)
        cand = inputs["input_ids"][0, -1]
        loss = -torch.log_softmax(out.logits[0, -2].float(), -1)[cand]
        grads = torch.autograd.grad(loss, out.attentions)
    finally:
        for p in model.parameters():
            p.requires_grad_(False)
    for att, grad in zip(out.attentions, grads):
        assert torch.count_nonzero(grad[0, :, -1, :]) == 0
        assert torch.count_nonzero((att[0, :, -1, :] * grad[0, :, -1, :]).abs()) == 0
        assert torch.count_nonzero(grad[0, :, -2, :]) > 0
    ours = saliency_rows(model, inputs, spans.answer_start)[0]
    assert torch.all(ours.norm(dim=-1) > 0.99)


def test_engine_leaves_parameters_untouched(tiny_models: dict[str, TinyLVLM]) -> None:
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=2)
    saliency_rows(tiny.model, inputs, spans.answer_start)
    assert all(p.grad is None and not p.requires_grad for p in tiny.model.parameters())


def test_step_backward_is_single_use(tiny_models: dict[str, TinyLVLM]) -> None:
    tiny = tiny_models["llava"]
    inputs, _ = tiny.inputs(n_answer=0)
    step = SaliencyEngine(tiny.model).start(inputs)
    step.saliency([3])
    with pytest.raises(RuntimeError, match="already called"):
        step.saliency([4])


def test_the_prefill_computes_no_logits_it_discards(tiny_models: dict[str, TinyLVLM]) -> None:
    """Only the prompt's KV cache is kept from the no-gradient prefill: it asks for one position's
    logits (a 7B model's vocabulary times the prompt times the batch is gigabytes), and the
    rows still equal brute force."""
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=3)
    widths: list[int] = []
    handle = tiny.model.register_forward_hook(lambda module, args, out: widths.append(out.logits.shape[1]))
    try:
        got = saliency_rows(tiny.model, inputs, spans.answer_start)
    finally:
        handle.remove()
    assert widths == [1] * len(widths) and len(widths) == 4  # the prefill, then three one-token steps
    torch.testing.assert_close(got, brute_force_rows(tiny.model, inputs, spans.answer_start), atol=TOL, rtol=0)


def test_a_stale_step_refuses_its_backward(tiny_models: dict[str, TinyLVLM]) -> None:
    """The next step writes into the KV cache the previous step's graph reads (the cache grows in
    place, :mod:`lvsal_data.kvcache`): the stale backward raises, it never reads changed values."""
    tiny = tiny_models["llava"]
    inputs, _ = tiny.inputs(n_answer=0)
    engine = SaliencyEngine(tiny.model)
    first = engine.start(inputs)
    engine.step([3])
    with pytest.raises(RuntimeError, match="inplace"):
        first.saliency([3])


def test_default_target_layers() -> None:
    assert default_target_layers(32) == [6, 7, 8]
    assert default_target_layers(28) == [5, 6, 7]
    assert default_target_layers(4) == [0, 1]
    with pytest.raises(InputError):
        default_target_layers(0)


def test_bad_arguments_are_clear(tiny_models: dict[str, TinyLVLM]) -> None:
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=2)
    seq = inputs["input_ids"].shape[1]
    with pytest.raises(InputError, match="answer_start"):
        saliency_rows(tiny.model, inputs, seq)
    with pytest.raises(InputError, match="out of range"):
        saliency_rows(tiny.model, inputs, spans.answer_start, layers=[9])


def test_non_eager_attention_is_refused() -> None:
    model = tiny_llava().model
    model.config.get_text_config()._attn_implementation = "sdpa"
    with pytest.raises(UnsupportedModelError, match="eager"):
        SaliencyEngine(model)


def test_left_padded_prompt_traces_like_the_unpadded_one(tiny: TinyLVLM) -> None:
    """Regression: a left-padded prompt was accepted but its mask was not carried into the
    traced steps (rows off by ~0.3). Padded rows, tokens and summaries equal the unpadded ones."""
    from lvsal_data import find_spans, trace_generate

    pad = 3
    inputs, spans = tiny.inputs(n_answer=0)
    padded, padded_spans = tiny.inputs(n_answer=0, pad=pad)
    assert torch.equal(padded["input_ids"][:, pad:], inputs["input_ids"])
    assert find_spans(padded["input_ids"], tiny.model.config, attention_mask=padded["attention_mask"]) == padded_spans
    plain = trace_generate(tiny.model, inputs, spans, max_new_tokens=6, eos_token_ids=[], keep_rows=True)
    shifted = trace_generate(tiny.model, padded, padded_spans, max_new_tokens=6, eos_token_ids=[], keep_rows=True)
    assert shifted.token_ids == plain.token_ids
    for a, b in zip(plain.tokens, shifted.tokens):
        np.testing.assert_allclose(b.summary.sal, a.summary.sal, atol=TOL)
        np.testing.assert_allclose(b.summary.att, a.summary.att, atol=TOL)
        assert b.summary.saliency == pytest.approx(a.summary.saliency, abs=TOL)
        np.testing.assert_array_equal(b.summary.lengths, a.summary.lengths)
        np.testing.assert_allclose(b.row.astype(np.float32), a.row.astype(np.float32), atol=2e-3)
    answer = torch.tensor([plain.token_ids])
    full = {k: v for k, v in inputs.items()}
    full_padded = {k: v for k, v in padded.items()}
    for d in (full, full_padded):
        d["input_ids"] = torch.cat([d["input_ids"], answer], 1)
        d["attention_mask"] = torch.cat([d["attention_mask"], torch.ones_like(answer)], 1)
        if "mm_token_type_ids" in d:
            d["mm_token_type_ids"] = torch.cat([d["mm_token_type_ids"], torch.zeros_like(answer, dtype=torch.int)], 1)
    rows = saliency_rows(tiny.model, full, spans.answer_start)
    rows_padded = saliency_rows(tiny.model, full_padded, padded_spans.answer_start)
    assert torch.all(rows_padded[..., :pad] == 0)  # masked keys carry no saliency
    torch.testing.assert_close(rows_padded[..., pad:], rows, atol=TOL, rtol=0)


def test_right_padding_is_refused(tiny_models: dict[str, TinyLVLM]) -> None:
    tiny = tiny_models["llava"]
    inputs, _ = tiny.inputs(n_answer=0)
    inputs["attention_mask"] = inputs["attention_mask"].clone()
    inputs["attention_mask"][0, -2] = 0
    with pytest.raises(InputError, match="left-padded"):
        SaliencyEngine(tiny.model).start(inputs)


def test_qwen2_vl_prompt_as_long_as_a_patch_row(tiny_models: dict[str, TinyLVLM]) -> None:
    """Regression: with a prompt of exactly 1176 tokens (= Qwen2-VL's patch dimension 3 * 2 * 14 * 14)
    the prefill cut pixel_values too, taking them for a per-token input, and the run crashed."""
    from lvsal_data import trace_generate

    tiny = tiny_models["qwen2_vl"]
    inputs, spans = tiny.inputs(n_instruction=1176 - 4 - tiny.n_image_tokens, n_answer=0)
    assert inputs["input_ids"].shape[-1] == inputs["pixel_values"].shape[-1] == 1176
    trace = trace_generate(tiny.model, inputs, spans, max_new_tokens=3, eos_token_ids=[])
    unused = next(t for t in range(3, 90) if t not in trace.token_ids)
    ref = tiny.model.generate(**inputs, max_new_tokens=3, do_sample=False, eos_token_id=unused)
    assert trace.token_ids == ref[0, 1176:].tolist()
