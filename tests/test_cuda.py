"""The CUDA path: device placement, half precision, exactness on the GPU, no memory growth.

Every test here is marked ``gpu`` and skipped when no CUDA device is present (CI has none); run
them on a GPU machine with ``pytest -m gpu tests/test_cuda.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lvsal_data import SaliencyEngine, load_lvlm, saliency_rows, trace_generate
from lvsal_data.decoding import SGRS, LocoREParams, locore
from lvsal_data.organism.world import make_scene
from lvsal_data.testing import BUILDERS

DEVICE = os.environ.get("LVSAL_TEST_DEVICE", "cuda")  # "cpu" runs the same checks here, to debug them
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="needs a CUDA device"),
]
if DEVICE.startswith("cuda"):
    # exactness checks compare against float32 references: no TF32 convolutions (Qwen2-VL's patch embed)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

HALF = [torch.float16, torch.bfloat16]


def _on(tiny, dtype=torch.float32, n_answer=6):
    model = tiny.model.to(device=DEVICE, dtype=dtype)
    inputs, spans = tiny.inputs(n_answer=n_answer)
    inputs = {k: v.to(DEVICE) for k, v in inputs.items()}
    if torch.is_floating_point(inputs["pixel_values"]):
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    return model, inputs, spans


@pytest.fixture(params=sorted(BUILDERS))
def fresh_tiny(request):
    """A freshly built tiny model of each architecture (moved to the GPU by the test)."""
    return BUILDERS[request.param]()


@pytest.fixture(scope="module", params=["float32", "float16", "bfloat16"])
def organism(request):
    return load_lvlm("organism", device=DEVICE, dtype=request.param)


def test_load_places_model_and_inputs_on_the_gpu(organism) -> None:
    lvlm = organism
    kind = torch.device(DEVICE).type
    assert lvlm.device.type == kind
    assert {p.device.type for p in lvlm.model.parameters()} == {kind}
    assert {p.dtype for p in lvlm.model.parameters()} == {lvlm.dtype}
    prepared = lvlm.prepare(make_scene("test", 0).render(), "Please describe this image in detail.")
    assert all(v.device.type == kind for v in prepared.inputs.values() if torch.is_tensor(v))
    assert prepared.inputs["pixel_values"].dtype == lvlm.dtype


@pytest.mark.skipif(not DEVICE.startswith("cuda"), reason="the GPU default")
def test_default_dtype_on_gpu_is_bfloat16() -> None:
    assert load_lvlm("organism", device=DEVICE).dtype == torch.bfloat16


def test_rows_equal_brute_force_on_the_gpu(fresh_tiny) -> None:
    from test_saliency import brute_force_rows

    model, inputs, spans = _on(fresh_tiny)
    got = saliency_rows(model, inputs, spans.answer_start)
    ref = brute_force_rows(model, inputs, spans.answer_start)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


def test_gpu_rows_equal_cpu_rows(fresh_tiny) -> None:
    inputs, spans = fresh_tiny.inputs(n_answer=6)
    cpu = saliency_rows(fresh_tiny.model, inputs, spans.answer_start)
    model, gpu_inputs, _ = _on(fresh_tiny)
    gpu = saliency_rows(model, gpu_inputs, spans.answer_start)
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_rows_are_close_to_float32(fresh_tiny, dtype) -> None:
    model, inputs, spans = _on(fresh_tiny)
    full = saliency_rows(model, inputs, spans.answer_start)
    model, inputs, spans = _on(fresh_tiny, dtype)
    half = saliency_rows(model, inputs, spans.answer_start)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    # unit rows; half precision moves each entry by a few hundredths at most on these tiny models
    assert (half - full).abs().max() < 0.05
    torch.testing.assert_close(half.norm(dim=-1), full.norm(dim=-1), atol=1e-3, rtol=0)


def test_traced_greedy_equals_generate_in_every_dtype(organism) -> None:
    lvlm = organism
    prepared = lvlm.prepare(make_scene("test", 3).render(), "Please describe this image in detail.")
    with torch.no_grad():
        out = lvlm.model.generate(**prepared.inputs, max_new_tokens=24, do_sample=False)
    expected = out[0, prepared.spans.answer_start:].tolist()
    trace = trace_generate(lvlm.model, prepared.inputs, prepared.spans, max_new_tokens=24)
    assert trace.token_ids == expected[: len(trace.tokens)]
    for t in trace.tokens:
        assert 0.0 <= t.summary.saliency <= 1.0 + 1e-6


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])  # as in test_decoding: no image-token candidates
def test_sgrs_equals_the_naive_reference_on_the_gpu(family) -> None:
    from test_decoding import _naive_sgrs

    model, inputs, spans = _on(BUILDERS[family](), n_answer=0)
    target = [0, 1]
    trace = trace_generate(model, inputs, spans, SGRS(alpha=0.6, deterministic=True), max_new_tokens=8,
                           eos_token_ids=[], target_layers=target)
    naive, _, _ = _naive_sgrs(model, inputs, spans, target, alpha=0.6, deterministic=True)
    assert trace.token_ids == naive[: len(trace.tokens)]


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_locore_beta_zero_is_the_base_model_in_half_precision(fresh_tiny, dtype) -> None:
    model, inputs, spans = _on(fresh_tiny, dtype)
    with torch.no_grad():
        base = model(**inputs).logits
        with locore(model, spans.answer_start, LocoREParams(beta=0.0)):
            same = model(**inputs).logits
    assert torch.equal(base, same)


@pytest.mark.skipif(not DEVICE.startswith("cuda"), reason="reads CUDA's allocator")
def test_no_memory_growth_beyond_the_cache() -> None:
    """Each step's graph is freed: allocated memory grows by the KV cache only."""
    lvlm = load_lvlm("organism", device=DEVICE, dtype="float32")
    prepared = lvlm.prepare(make_scene("test", 1).render(), "Please describe this image in detail.")
    cfg = lvlm.model.config.get_text_config()
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    engine = SaliencyEngine(lvlm.model)
    step = engine.start(prepared.inputs)
    marks = []
    for i in range(60):
        token = int(step.logits[0].argmax())
        step.saliency([token])
        step = engine.step([token])
        if i in (9, 59):
            torch.cuda.synchronize()
            marks.append(torch.cuda.memory_allocated())
    growth = marks[1] - marks[0]
    # the cache grows by 50 tokens; DynamicCache's torch.cat may hold one extra copy transiently
    assert growth <= 2 * 50 * per_token + 2**20, (growth, per_token)


def test_collect_on_the_gpu_in_bfloat16(tmp_path) -> None:
    out = tmp_path / "traces"
    proc = subprocess.run([sys.executable, "-m", "lvsal_data.cli", "collect", "--model", "organism",
                           "--data", "synthetic:split=test,n=4", "--out", str(out), "--device", DEVICE,
                           "--dtype", "bfloat16", "--max-new-tokens", "16"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"]["samples"] == 4 and manifest["rows"]["tokens"] > 0
    from lvsal_data.store import open_traces

    traces = open_traces(out)
    assert traces.manifest["model"]["dtype"] == "bfloat16"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fast_path_equals_the_plain_path_on_the_gpu(fresh_tiny, dtype) -> None:
    from test_saliency import _steps

    model, inputs, _ = _on(fresh_tiny, dtype, n_answer=0)
    fast_logits, fast_rows, engine = _steps(model, inputs, fast=True)
    assert engine.fast
    plain_logits, plain_rows, _ = _steps(model, inputs, fast=False)
    for a, b in zip(fast_logits, plain_logits):
        assert torch.equal(a, b)  # the forward is bitwise eager's
    for a, b in zip(fast_rows, plain_rows):  # the backward rounds differently in half precision
        torch.testing.assert_close(a, b, atol=1e-5 if dtype == torch.float32 else 2e-2, rtol=0)


@pytest.mark.parametrize("name", ["greedy", "sgrs", "locore"])
def test_batch_equals_batch_one_on_the_gpu(fresh_tiny, name) -> None:
    """The batched engine on the device (left padding, per-sample positions and generators, the
    growing KV cache): every sample's tokens and rows equal its batch-1 run there, in float32."""
    from test_batch import _alone, _assert_same, _samples, _together

    fresh_tiny.model.to(DEVICE)
    samples = [({k: v.to(DEVICE) for k, v in inputs.items()}, spans) for inputs, spans in _samples(fresh_tiny)]
    alone = _alone(fresh_tiny, samples, name, eos_token_ids=[])
    for batched, single in zip(_together(fresh_tiny, samples, name, eos_token_ids=[]), alone):
        _assert_same(batched, single)
