"""SGRS equals a naive full-recompute reference; LocoRE changes exactly the specified entries."""

from __future__ import annotations

import math

import pytest
import torch

from lvsal_data import SaliencyEngine, trace_generate
from lvsal_data.decoding import SGRS, DecodingOptions, LocoREParams, build_decoder, locore
from lvsal_data.decoding.locore import recent_answer_mask
from lvsal_data.errors import InputError
from lvsal_data.testing import TinyLVLM, write_logit_detector

STEPS = 8


def _naive_scores(model, inputs, spans, context: list[int], candidates: list[int], target: list[int]) -> list[float]:
    """The official release's way, with the indexing fixed: append each candidate, recompute the
    whole sequence (image included), loss at logits[-2], read row -2 (the emitting query)."""
    scores = []
    for c in candidates:
        ids = torch.cat([inputs["input_ids"], torch.tensor([context + [c]], device=inputs["input_ids"].device)], dim=1)
        full = dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
        if "mm_token_type_ids" in inputs:
            full["mm_token_type_ids"] = (ids == inputs["input_ids"][0, spans.image[0] + 1]).int()
        hook = model.get_input_embeddings().register_forward_hook(lambda m, i, o: o.detach().requires_grad_(True))
        try:
            with torch.enable_grad():
                out = model(**full, output_attentions=True)
                loss = -torch.log_softmax(out.logits[0, -2].float(), -1)[c]
                grads = torch.autograd.grad(loss, [out.attentions[l] for l in target])
        finally:
            hook.remove()
        per_layer = []
        for l, g in zip(target, grads):
            s = (out.attentions[l][0, :, -2, :-1].detach() * g[0, :, -2, :-1]).abs().mean(0)
            s = s / s.norm()
            per_layer.append(s[spans.image[1]:].mean())
        scores.append(float(torch.stack(per_layer).mean()))
    return scores


def _naive_sgrs(model, inputs, spans, target, *, alpha, k=5, tries=3, window=5, deterministic, seed=0):
    """Algorithm 1, written independently of lvsal_data.decoding.sgrs."""
    gen = torch.Generator().manual_seed(seed)
    context: list[int] = []
    history: list[float] = []
    fallbacks = rejections = 0
    for _ in range(STEPS):
        device = inputs["input_ids"].device
        ids = torch.cat([inputs["input_ids"], torch.tensor([context], dtype=torch.long, device=device)], dim=1)
        full = dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
        if "mm_token_type_ids" in inputs:
            zeros = torch.zeros(1, len(context), dtype=torch.int, device=device)
            full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], zeros], 1)
        with torch.no_grad():
            top_logits, top_ids = model(**full).logits[0, -1].float().topk(k)
        cands = top_ids.tolist()
        scores = _naive_scores(model, inputs, spans, context, cands, target)
        tau = alpha * sum(history[-window:]) / len(history[-window:]) if history else 0.0
        left, chosen = list(range(k)), None
        for _ in range(tries):
            if deterministic:
                i = left[0]
            else:
                w = torch.softmax(top_logits.double()[left], 0)  # top-K renormalised over the untried
                i = left[int(torch.multinomial(w, 1, generator=gen))]
            left.remove(i)
            if scores[i] >= tau:
                chosen = i
                break
            rejections += 1
        if chosen is None:
            fallbacks += 1
            chosen = max(range(k), key=lambda i: (scores[i], -i))
        else:
            history.append(scores[chosen])
        context.append(cands[chosen])
    return context, rejections, fallbacks


@pytest.fixture(params=["llava", "qwen2_vl"])
def model_under_test(request, tiny_models) -> TinyLVLM:
    return tiny_models[request.param]


@pytest.mark.parametrize("deterministic", [True, False])
def test_sgrs_equals_naive_reference(model_under_test: TinyLVLM, deterministic: bool) -> None:
    tiny = model_under_test
    inputs, spans = tiny.inputs(n_answer=0)
    target = [1, 2]
    alpha = 1.05  # high enough that candidates get rejected and fallbacks happen
    ref, rejections, fallbacks = _naive_sgrs(tiny.model, inputs, spans, target, alpha=alpha,
                                             deterministic=deterministic)
    assert rejections > 0, "the test must exercise rejections"
    sgrs = SGRS(alpha=alpha, deterministic=deterministic)
    trace = trace_generate(tiny.model, inputs, spans, sgrs, max_new_tokens=STEPS, eos_token_ids=[],
                           target_layers=target, generator=torch.Generator().manual_seed(0))
    assert trace.token_ids == ref
    assert sum(t.record["rejected"] for t in trace.tokens) == rejections
    assert sum(t.record["fallback"] for t in trace.tokens) == fallbacks
    assert trace.tokens[0].record["tau"] == 0.0  # cold start


def test_sgrs_alpha_zero_is_the_base_decoding(model_under_test: TinyLVLM) -> None:
    tiny = model_under_test
    inputs, spans = tiny.inputs(n_answer=0)
    greedy = trace_generate(tiny.model, inputs, spans, max_new_tokens=STEPS, eos_token_ids=[]).token_ids
    det = trace_generate(tiny.model, inputs, spans, SGRS(alpha=0, deterministic=True), max_new_tokens=STEPS,
                         eos_token_ids=[]).token_ids
    assert det == greedy
    # sampling mode with alpha = 0 is top-K sampling: the first draw is always accepted
    sampled = trace_generate(tiny.model, inputs, spans, SGRS(alpha=0), max_new_tokens=STEPS, eos_token_ids=[],
                             generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    ref: list[int] = []
    for tok in sampled.tokens:
        assert tok.record["tries"] == 1 and not tok.record["fallback"]
    engine = SaliencyEngine(tiny.model, layers=[0])
    step = engine.start(inputs)
    for _ in range(STEPS):
        logits, ids = step.logits[0].topk(5)
        token = int(ids[int(torch.multinomial(torch.softmax(logits.double(), 0), 1, generator=gen))])
        ref.append(token)
        step = engine.step([token])
    assert sampled.token_ids == ref


def test_fallback_history_flag(tiny_models) -> None:
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=0)
    runs = {}
    for flag in (False, True):
        d = SGRS(alpha=2.0, deterministic=True, fallback_in_history=flag)  # alpha 2: everything after step 1 falls back
        runs[flag] = trace_generate(tiny.model, inputs, spans, d, max_new_tokens=5, eos_token_ids=[])
    no_hist, hist = runs[False], runs[True]
    assert all(t.record["fallback"] for t in no_hist.tokens[1:])
    # paper: a fallback never enters the history, so tau stays at alpha x the first accepted score
    assert len({round(t.record["tau"], 9) for t in no_hist.tokens[1:]}) == 1
    assert len({round(t.record["tau"], 9) for t in hist.tokens[1:]}) > 1


def test_sgrs_sampling_survives_a_rejected_certain_top1(tiny_models) -> None:
    """Regression: when the top-1 probability rounds to 1.0 in float32, the other candidates'
    probabilities are exactly 0; rejecting the top-1 left multinomial all-zero (NaN) weights."""
    from lvsal_data.decoding import Context

    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=0)
    step = SaliencyEngine(tiny.model).start(inputs)
    step.logits = torch.full_like(step.logits, -50.0)
    step.logits[0, :5] = torch.tensor([200.0, 0.0, -1.0, -2.0, -3.0])
    assert float(torch.softmax(step.logits[0], -1)[1]) == 0.0  # the float32 probabilities really vanish
    sgrs = SGRS(alpha=1.0)
    sgrs.reset(Context(spans=spans, target=[1, 2], generator=torch.Generator().manual_seed(0)))
    sgrs.history.append(1e9)  # every candidate is rejected: three draws, then the fallback
    choice = sgrs.choose(step)
    assert choice.record == {"tries": 3, "rejected": 3, "fallback": True, "tau": pytest.approx(1e9)}
    assert choice.token in range(5)


def test_sgrs_bad_parameters() -> None:
    with pytest.raises(InputError):
        SGRS(k=0)
    with pytest.raises(InputError):
        SGRS(alpha=-1)


# --- LocoRE -----------------------------------------------------------------------------------

def _attention_at_step(tiny: TinyLVLM, n_answer: int, params: LocoREParams | None):
    """Attention rows (layers, heads, keys) of the query at answer_start + n_answer - 1."""
    inputs, spans = tiny.inputs(n_answer=n_answer)
    ctx = locore(tiny.model, spans.answer_start, params) if params else torch.no_grad()
    with ctx:
        step = SaliencyEngine(tiny.model).start(inputs)
    return step.attention[0], step.logits[0], spans


def test_recent_answer_mask() -> None:
    m = recent_answer_mask(q_len=4, k_len=10, answer_start=5, window=2, device=torch.device("cpu"))
    # queries at 6, 7, 8, 9 boost their w_s = 2 answer predecessors, never their own key (Eq. 8)
    assert m[0].nonzero().flatten().tolist() == [5]
    assert m[1].nonzero().flatten().tolist() == [5, 6]
    assert m[3].nonzero().flatten().tolist() == [7, 8]
    assert not recent_answer_mask(1, 6, 5, 2, torch.device("cpu")).any()  # the first answer token has no predecessor
    assert not recent_answer_mask(1, 5, 5, 2, torch.device("cpu")).any()  # a prompt query boosts nothing


@pytest.mark.parametrize("renormalize", [True, False])
def test_locore_changes_exactly_the_specified_entries(model_under_test: TinyLVLM, renormalize: bool) -> None:
    tiny = model_under_test
    beta, window = 0.5, 2
    base, _, spans = _attention_at_step(tiny, 5, None)
    params = LocoREParams(beta=beta, window=window, layers=(1,), renormalize=renormalize)
    boosted, _, _ = _attention_at_step(tiny, 5, params)
    q = spans.answer_start + 4
    hit = torch.zeros(q + 1, dtype=torch.bool)
    hit[max(spans.answer_start, q - window): q] = True  # the query's w_s predecessors, not its own key
    assert int(hit.sum()) == window
    torch.testing.assert_close(boosted[0], base[0], rtol=0, atol=0)  # layer 0 is not boosted, and its input is the same
    ratio = boosted[1] / base[1]  # (heads, keys)
    if renormalize:
        scale = ratio[:, ~hit].mean(-1, keepdim=True)  # the renormalisation constant, per head
        torch.testing.assert_close(ratio[:, ~hit], scale.expand(-1, int((~hit).sum())), rtol=1e-5, atol=0)
        torch.testing.assert_close(ratio[:, hit], (scale * (1 + beta)).expand(-1, int(hit.sum())), rtol=1e-5, atol=0)
        torch.testing.assert_close(boosted[1].sum(-1), torch.ones(boosted.shape[1]), rtol=0, atol=1e-5)
    else:
        torch.testing.assert_close(ratio[:, ~hit], torch.ones_like(ratio[:, ~hit]), rtol=0, atol=0)
        torch.testing.assert_close(ratio[:, hit], torch.full_like(ratio[:, hit], 1 + beta), rtol=1e-6, atol=0)


@pytest.mark.parametrize("renormalize", [True, False])
def test_locore_step_slice_equals_the_full_mask(model_under_test: TinyLVLM, renormalize: bool) -> None:
    """A decoding step boosts a key slice; a full forward builds the mask: same rows, same logits."""
    tiny = model_under_test
    params = LocoREParams(beta=0.7, window=2, renormalize=renormalize)
    step_att, step_logits, spans = _attention_at_step(tiny, 5, params)
    inputs, _ = tiny.inputs(n_answer=5)
    with torch.no_grad(), locore(tiny.model, spans.answer_start, params):
        out = tiny.model(**inputs, output_attentions=True)
    full = torch.stack([a[0, :, -1] for a in out.attentions])
    torch.testing.assert_close(step_att.float(), full.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(step_logits.reshape(-1).float(), out.logits[0, -1].float(), rtol=1e-5, atol=1e-5)


def test_locore_never_touches_the_prompt(model_under_test: TinyLVLM) -> None:
    base, logits, spans = _attention_at_step(model_under_test, 0, None)
    boosted, logits_b, _ = _attention_at_step(model_under_test, 0, LocoREParams(beta=1.0))
    assert torch.equal(base, boosted) and torch.equal(logits, logits_b)


def test_locore_beta_zero_is_exactly_the_base_model(model_under_test: TinyLVLM) -> None:
    tiny = model_under_test
    base, logits, _ = _attention_at_step(tiny, 6, None)
    zero, logits0, _ = _attention_at_step(tiny, 6, LocoREParams(beta=0.0))
    assert torch.equal(base, zero) and torch.equal(logits, logits0)
    inputs, spans = tiny.inputs(n_answer=0)
    plain = tiny.model.generate(**inputs, max_new_tokens=8, do_sample=False)
    with locore(tiny.model, spans.answer_start, beta=0.0):
        same = tiny.model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert torch.equal(plain, same)


def test_generate_runs_unchanged_under_locore(tiny_models) -> None:
    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=0)
    cfg = tiny.model.config.get_text_config()
    with locore(tiny.model, spans.answer_start, beta=3.0, window=3):
        assert cfg._attn_implementation == "lvsal_eager"
        out = tiny.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert cfg._attn_implementation == "eager" and out.shape[1] == inputs["input_ids"].shape[1] + 6
    decoder = build_decoder("locore", DecodingOptions(locore_beta=3.0, locore_window=3))
    traced = trace_generate(tiny.model, inputs, spans, decoder, max_new_tokens=6, eos_token_ids=[2])
    assert traced.token_ids == out[0, inputs["input_ids"].shape[1]:][: len(traced.token_ids)].tolist()


def test_locore_bad_layers(tiny_models) -> None:
    tiny = tiny_models["llava"]
    with pytest.raises(InputError, match="out of range"):
        with locore(tiny.model, 5, beta=0.1, layers=[9]):
            pass


def test_every_registered_decoding_returns_valid_traces(tiny_models, tmp_path) -> None:
    from lvsal_data.decoding import DECODINGS

    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=0)
    guided = DecodingOptions(detector=str(write_logit_detector(tmp_path / "d.json")), guided_when="every")
    for name in DECODINGS:
        trace = trace_generate(tiny.model, inputs, spans, build_decoder(name, guided if name == "guided" else None),
                               max_new_tokens=4, eos_token_ids=[], generator=torch.Generator().manual_seed(0))
        assert len(trace.tokens) == 4
        for t in trace.tokens:
            assert math.isfinite(t.summary.saliency) and t.summary.sal.shape[1] == 4
            assert ("tries" in t.record) == name.startswith("sgrs")


def test_guided_with_a_constant_detector_is_greedy(tiny: TinyLVLM, tmp_path) -> None:
    """A detector that scores every candidate alike (here: ~0) leaves the most likely one."""
    from lvsal_data.decoding import Guided
    from lvsal_data.scoring import LinearDetector

    inputs, spans = tiny.inputs(n_answer=0)
    zero = LinearDetector.load(write_logit_detector(tmp_path / "zero.json", coef=(0.0, 0.0), intercept=-50.0))
    guided = trace_generate(tiny.model, inputs, spans, Guided(zero, floor=0.0, when="every"), max_new_tokens=STEPS,
                            eos_token_ids=[])
    greedy = trace_generate(tiny.model, inputs, spans, max_new_tokens=STEPS, eos_token_ids=[])
    assert guided.token_ids == greedy.token_ids
    assert all(t.record["intervened"] and not t.record["replaced"] for t in guided.tokens)


def test_guided_takes_the_eligible_candidate_the_detector_scores_lowest(tiny_models, tmp_path) -> None:
    """With p rising with log-probability, the least likely candidate above the floor is emitted;
    the floor bounds how unlikely it may be."""
    from lvsal_data.decoding import Guided
    from lvsal_data.scoring import LinearDetector

    tiny = tiny_models["llava"]
    inputs, spans = tiny.inputs(n_answer=0)
    detector = LinearDetector.load(write_logit_detector(tmp_path / "d.json"))
    for floor in (0.0, 0.5):
        decoder = Guided(detector, k=4, floor=floor, when="every")
        trace = trace_generate(tiny.model, inputs, spans, decoder, max_new_tokens=STEPS, eos_token_ids=[])
        engine = SaliencyEngine(tiny.model)
        step = engine.start(inputs)
        for tok in trace.tokens:
            probs = torch.softmax(step.logits[0].double(), -1)
            top = probs.topk(4)
            eligible = [int(t) for p, t in zip(top.values, top.indices) if p >= floor * top.values[0]]
            assert tok.token_id == min(eligible, key=lambda t: float(probs[t]))
            assert tok.record["replaced"] == (tok.token_id != eligible[0])
            step = engine.step([tok.token_id])


def test_guided_bad_parameters(tmp_path) -> None:
    from lvsal_data.decoding import Context, Guided
    from lvsal_data.scoring import LinearDetector

    with pytest.raises(InputError, match="needs --detector"):
        build_decoder("guided")
    detector = LinearDetector.load(write_logit_detector(tmp_path / "d.json"))
    for kwargs, message in (({"k": 0}, "k >= 1"), ({"floor": 2.0}, "floor"), ({"when": "sometimes"}, "guided-when")):
        with pytest.raises(InputError, match=message):
            Guided(detector, **kwargs)
    with pytest.raises(InputError, match="tokenizer"):
        Guided(detector).reset(Context(spans=None, target=[0]))
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not an lvsal detector"):
        LinearDetector.load(tmp_path / "bad.json")


def test_guided_mentions_mode_reads_the_answer_text(tmp_path) -> None:
    """At mention starts only: the most likely candidate must start a word that begins an object name."""
    from lvsal_data.decoding import Context, Guided
    from lvsal_data.models import load_lvlm
    from lvsal_data.scoring import LinearDetector

    tokenizer = load_lvlm("organism", device="cpu").tokenizer
    decoder = Guided(LinearDetector.load(write_logit_detector(tmp_path / "d.json")))
    decoder.reset(Context(spans=None, target=[0], tokenizer=tokenizer))
    decoder.answer = tokenizer.encode("A photo of a", add_special_tokens=False)
    word = lambda text: tokenizer.encode(" " + text, add_special_tokens=False)[0]  # noqa: E731
    assert decoder._could_start_mention(word("dog"))
    assert not decoder._could_start_mention(word("the"))
