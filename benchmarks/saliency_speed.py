"""Speed and memory of traced decoding against plain generate() and the naive reference.

A LLaVA-1.5-shaped tiny model: 35 system tokens, 576 image tokens (336 px, 14 px patches),
an instruction, and 256 answer tokens. Prints one table (per-token time, ratios, peak memory).

    python benchmarks/saliency_speed.py [--answer 256] [--device cpu|cuda] [--dtype float32]

The naive reference recomputes the whole sequence (vision tower included) per token; its
per-token cost is estimated at ``--naive-samples`` answer positions spread evenly over the
answer (an unbiased estimate of the mean over the answer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (add_common_arguments, llava15_7b, measure, naive_positions, print_table,  # noqa: E402
                     tiny_llava15, with_answer)


def plain_generate(model, inputs, spans, args) -> int:
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=args.answer, do_sample=False)
    return out.shape[1] - inputs["input_ids"].shape[1]


def traced_greedy(model, inputs, spans, args) -> int:
    from lvsal_data import trace_generate

    return len(trace_generate(model, inputs, spans, max_new_tokens=args.answer, eos_token_ids=[]).tokens)


def naive_reference(model, inputs, spans, args) -> int:
    from reference import naive_token_row

    full = with_answer(inputs, args.answer, args.device)
    positions = naive_positions(args)
    for i in positions:
        p = spans.answer_start + i
        naive_token_row(model, full, p, int(full["input_ids"][0, p]))
    return len(positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--model", default="tiny", choices=["tiny", "7b"],
                        help="tiny: the LLaVA-1.5-shaped tiny model; 7b: LLaVA-1.5-7B's shape, random weights (GPU)")
    args = parser.parse_args()
    setup = tiny_llava15 if args.model == "tiny" else llava15_7b
    rows = measure(setup, {"generate()": plain_generate, "traced greedy": traced_greedy,
                                  "naive reference": naive_reference}, args)
    what = (f"LLaVA-1.5-shaped tiny model: {args.layers} layers, hidden {args.hidden}, {args.heads} heads"
            if args.model == "tiny" else "LLaVA-1.5-7B shape (random weights): 32 layers, hidden 4096, 32 heads")
    print(f"\n{what}, 576 image + 35 system + 12 instruction tokens, {args.answer} answer tokens, "
          f"{args.device} {args.dtype}, {args.threads} threads\n")
    print_table(rows, {"x generate()": "generate()", "x traced": "traced greedy"})
    print(f"\ntraced greedy is {rows[2][1] / rows[1][1]:.1f}x faster than the naive reference per token")


if __name__ == "__main__":
    main()
