"""Shared benchmark harness: each method runs in its own subprocess so that its peak memory
(CPU: resident-set high-water mark above the post-setup level; CUDA: max allocated) is its own."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
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
    _sync(args.device)
    start = time.perf_counter()
    tokens = method(model, inputs, spans, args)
    _sync(args.device)
    elapsed = time.perf_counter() - start
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    queue.put((elapsed / tokens, tokens, peak))


def measure(setup: Setup, methods: dict[str, Method], args: Any) -> list[tuple[str, float, int, float]]:
    """Run every method in a fresh process; returns (name, seconds/token, tokens timed, peak MB)."""
    ctx = mp.get_context("spawn")
    rows = []
    for name, method in methods.items():
        queue: mp.Queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(setup, method, args, queue))
        proc.start()
        per_token, tokens, peak = queue.get()
        proc.join()
        rows.append((name, per_token, tokens, peak))
        print(f"  measured {name}", file=sys.stderr)
    return rows


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


def naive_positions(args: Any) -> list[int]:
    return torch.linspace(0, args.answer - 1, args.naive_samples).round().long().tolist()


def with_answer(inputs: dict, n: int, device: str) -> dict:
    """Inputs followed by n random answer tokens (for the naive references)."""
    answer = torch.randint(3, 80, (1, n), device=device)
    ids = torch.cat([inputs["input_ids"], answer], 1)
    return dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
