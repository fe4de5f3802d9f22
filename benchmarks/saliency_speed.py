"""Speed and memory of traced decoding against plain generate() and the naive reference.

A LLaVA-1.5-shaped tiny model: 35 system tokens, 576 image tokens (336 px, 14 px patches),
an instruction, and 256 answer tokens. Prints one table (per-token time, ratios, peak memory).

    python benchmarks/saliency_speed.py [--answer 256] [--device cpu|cuda] [--dtype float32]

Each method runs in its own subprocess so that peak memory (CPU: resident set high-water mark
above the post-setup level; CUDA: max allocated) belongs to that method alone. The naive
reference recomputes the whole sequence per token; its per-token cost is estimated on
``--naive-samples`` answer positions spread evenly over the answer (an unbiased estimate of
the mean over the answer).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _setup(args: argparse.Namespace):
    from lvsal_data.testing import tiny_llava

    torch.set_num_threads(args.threads)
    tiny = tiny_llava(image_size=336, patch_size=14, layers=args.layers, hidden=args.hidden, heads=args.heads,
                      kv_heads=args.heads)
    model = tiny.model.to(device=args.device, dtype=getattr(torch, args.dtype))
    model.generation_config.eos_token_id = None  # no EOS: every method decodes exactly --answer tokens
    inputs, spans = tiny.inputs(n_system=35, n_instruction=12, n_answer=0)
    inputs = {k: v.to(args.device) for k, v in inputs.items()}
    if inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    return model, inputs, spans


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _run(method: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    from lvsal_data import trace_generate

    model, inputs, spans = _setup(args)
    n = args.answer
    # Warm-up (allocator, kernels) outside the timed region.
    model.generate(**inputs, max_new_tokens=2, do_sample=False)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base = _rss_kb()
    _sync(args.device)
    start = time.perf_counter()
    if method == "generate()":
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=n, do_sample=False)
        tokens = out.shape[1] - inputs["input_ids"].shape[1]
    elif method == "traced greedy":
        tokens = len(trace_generate(model, inputs, spans, max_new_tokens=n, eos_token_ids=[]).tokens)
    elif method == "naive reference":
        from reference import naive_token_row

        answer = torch.randint(3, 80, (1, n), device=args.device)
        full = dict(inputs, input_ids=torch.cat([inputs["input_ids"], answer], 1),
                    attention_mask=torch.ones(1, inputs["input_ids"].shape[1] + n, dtype=torch.long,
                                              device=args.device))
        a0 = spans.answer_start
        positions = torch.linspace(0, n - 1, args.naive_samples).round().long().tolist()
        for i in positions:
            naive_token_row(model, full, a0 + i, int(full["input_ids"][0, a0 + i]))
        tokens = len(positions)
    else:
        raise ValueError(method)
    _sync(args.device)
    elapsed = time.perf_counter() - start
    if args.device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    queue.put((method, elapsed / tokens, tokens, peak_mb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answer", type=int, default=256, help="answer tokens (default 256)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--naive-samples", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    rows = []
    for method in ("generate()", "traced greedy", "naive reference"):
        queue: mp.Queue = ctx.Queue()
        proc = ctx.Process(target=_run, args=(method, args, queue))
        proc.start()
        result = queue.get()
        proc.join()
        rows.append(result)
        print(f"  measured {method}", file=sys.stderr)
    base = rows[0][1]
    traced = rows[1][1]
    print(f"\nLLaVA-1.5-shaped tiny model: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, "
          f"576 image + 35 system + 12 instruction tokens, {args.answer} answer tokens, "
          f"{args.device} {args.dtype}, {args.threads} threads\n")
    print(f"| method | ms / token | tokens timed | x generate() | x traced | peak memory (MB) |")
    print(f"|---|---:|---:|---:|---:|---:|")
    for method, per_token, tokens, peak in rows:
        print(f"| {method} | {per_token * 1e3:.2f} | {tokens} | {per_token / base:.2f} | "
              f"{per_token / traced:.2f} | {peak:.0f} |")
    print(f"\ntraced greedy is {rows[2][1] / traced:.1f}x faster than the naive reference per token")


if __name__ == "__main__":
    main()
