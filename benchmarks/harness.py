"""Shared benchmark harness: each method runs in its own subprocess so that its peak memory
(CPU: resident-set high-water mark above the post-setup level; CUDA: max allocated) is its own."""

from __future__ import annotations

import multiprocessing as mp
import queue as pyqueue
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable

import torch

Setup = Callable[[Any], tuple[Any, dict, Any]]  # args -> (model, inputs, spans)
Method = Callable[[Any, dict, Any, Any], int]  # (model, inputs, spans, args) -> tokens timed


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _child(setup: Setup, method: Method, args: Any, queue: mp.Queue) -> None:
    torch.set_num_threads(args.threads)
    model, inputs, spans = setup(args)
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=2, do_sample=False)  # warm-up outside the timed region
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base = _rss_kb()
    times = []
    # --repeats runs (the naive references are slow enough that one run is stable)
    for _ in range(1 if method.__name__.startswith("naive") else args.repeats):
        _sync(args.device)
        start = time.perf_counter()
        tokens = method(model, inputs, spans, args)
        _sync(args.device)
        times.append((time.perf_counter() - start) / tokens)
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    queue.put((times, tokens, peak))


def measure(setup: Setup, methods: dict[str, Method], args: Any,
            statistic: str = "min") -> list[tuple[str, float, int, float]]:
    """Run every method in a fresh process; returns (name, seconds/token, tokens timed, peak MB).

    The seconds per token are the fastest of the ``--repeats`` runs (``statistic="min"``,
    timeit's rule: slower runs measure the machine, not the method) or their median."""
    ctx = mp.get_context("spawn")
    rows = []
    for name, method in methods.items():
        queue: mp.Queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(setup, method, args, queue))
        proc.start()
        while True:  # a child that dies (an error, the OOM killer) must not leave us waiting forever
            try:
                times, tokens, peak = queue.get(timeout=5)
                per_token = min(times) if statistic == "min" else statistics.median(times)
                break
            except pyqueue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"benchmark of {name!r} died (exit code {proc.exitcode}); "
                                       "see its traceback above")
        proc.join()
        rows.append((name, per_token, tokens, peak))
        print(f"  measured {name}: {per_token * 1e3:.2f} ms / token, peak {peak:.0f} MB", file=sys.stderr)
    return rows


def _paired_child(setup: Setup, a: Method, b: Method, args: Any, pairs: int, queue: mp.Queue) -> None:
    torch.set_num_threads(args.threads)
    model, inputs, spans = setup(args)
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=2, do_sample=False)
    ratios = []
    for _ in range(pairs):  # alternate, so that drift of the machine hits both sides alike
        times = []
        for method in (a, b):
            _sync(args.device)
            start = time.perf_counter()
            tokens = method(model, inputs, spans, args)
            _sync(args.device)
            times.append((time.perf_counter() - start) / tokens)
        ratios.append(times[1] / times[0])
    queue.put(ratios)


def paired_ratio(setup: Setup, a: Method, b: Method, args: Any, pairs: int = 5) -> list[float]:
    """Per-token time of ``b`` over ``a``, the two run alternately in one process, ``pairs`` times
    (sturdier than separate processes for ratios near 1 on a shared machine)."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_paired_child, args=(setup, a, b, args, pairs, queue))
    proc.start()
    while True:
        try:
            ratios = queue.get(timeout=5)
            break
        except pyqueue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"paired benchmark died (exit code {proc.exitcode})")
    proc.join()
    return ratios


def print_table(rows: list[tuple[str, float, int, float]], baselines: dict[str, str]) -> None:
    """A markdown table with one ratio column per baseline (column title -> method name)."""
    per = {name: t for name, t, _, _ in rows}
    head = "| method | ms / token | tokens timed | " + " | ".join(baselines) + " | peak memory (MB) |"
    print(head)
    print("|---|---:|---:|" + "---:|" * len(baselines) + "---:|")
    for name, t, tokens, peak in rows:
        ratios = " | ".join(f"{t / per[b]:.2f}" for b in baselines.values())
        print(f"| {name} | {t * 1e3:.2f} | {tokens} | {ratios} | {peak:.0f} |")


def tiny_llava15(args: Any) -> tuple[Any, dict, Any]:
    """A LLaVA-1.5-shaped tiny model: 35 system, 576 image (336 px / 14 px), 12 instruction tokens."""
    from lvsal_data.testing import tiny_llava

    tiny = tiny_llava(image_size=336, patch_size=14, layers=args.layers, hidden=args.hidden, heads=args.heads,
                      kv_heads=args.heads)
    model = tiny.model.to(device=args.device, dtype=getattr(torch, args.dtype))
    model.generation_config.eos_token_id = None  # no EOS: every method decodes exactly --answer tokens
    inputs, spans = tiny.inputs(n_system=35, n_instruction=12, n_answer=0)
    inputs = {k: v.to(args.device) for k, v in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    return model, inputs, spans


def llava15_7b(args: Any) -> tuple[Any, dict, Any]:
    """LLaVA-1.5-7B's exact shape (CLIP ViT-L/336 tower, Llama-2-7B: 32 layers, hidden 4096, 32 heads,
    vocabulary 32064), random weights built on ``--device`` in ``--dtype``: the real model's cost
    without its download. Same prompt layout as :func:`tiny_llava15`; needs a GPU (about 14 GB in
    bfloat16)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from lvsal_data.testing import TinyLVLM

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=32000, image_seq_length=576,
                         vision_feature_layer=-2, vision_feature_select_strategy="default")
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, args.dtype))
    try:
        with torch.device(args.device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.eval().requires_grad_(False)
    model.config._attn_implementation = "eager"
    model.generation_config.eos_token_id = None
    pixels = lambda g: {"pixel_values": torch.randn(1, 3, 336, 336, generator=g)}  # noqa: E731
    inputs, spans = TinyLVLM(model, "llava", 576, pixels).inputs(n_system=35, n_instruction=12, n_answer=0)
    inputs = {k: v.to(args.device) for k, v in inputs.items()}
    return model, inputs, spans


def add_common_arguments(parser: Any) -> None:
    parser.add_argument("--answer", type=int, default=256, help="answer tokens (default 256)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--naive-samples", type=int, default=16,
                        help="answer positions at which the naive reference is timed (spread evenly)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method; the fastest counts")


def naive_positions(args: Any) -> list[int]:
    return torch.linspace(0, args.answer - 1, args.naive_samples).round().long().tolist()


def with_answer(inputs: dict, n: int, device: str) -> dict:
    """Inputs followed by n random answer tokens (for the naive references)."""
    answer = torch.randint(5, 80, (1, n), device=device)  # ids 0-4 are special in both models
    ids = torch.cat([inputs["input_ids"], answer], 1)
    return dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
