"""Per-token cost of the decodings: greedy generate(), traced greedy, SGRS, naive SGRS, LocoRE.

Two models: the LLaVA-1.5-shaped tiny model (576 image tokens, 256 answer tokens) and the shipped
organism (``--model organism``). Prints a table with ratios and peak memory.

    python benchmarks/decoding_speed.py [--model tiny|organism|7b] [--answer 256] [--device cuda]
    python benchmarks/decoding_speed.py --batch-sizes 1,4,16 [--model ...]   # batched tracing

With ``--batch-sizes``, each method runs B copies of the prompt together (the collector's
``--batch-size``): plain ``generate()``, LocoRE ``generate()``, and the collector's traced greedy,
SGRS and LocoRE decodings (every layer traced). The table gives amortised ms per token and
tokens/s (the median of ``--repeats`` runs), each method's ratio to ``generate()`` at the same
batch size, its speed-up over the first batch size, and its peak memory.

SGRS runs as a decoding does, tracing only its target layers ("SGRS"), and also while tracing
every layer as the collector does ("SGRS, all layers traced"). The naive SGRS reference is the
release's way with the indexing fixed: for each of the K candidates, append it and recompute the
whole sequence with gradients (vision tower included); it is timed at ``--naive-samples``
positions spread over the answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (add_common_arguments, llava15_7b, measure, naive_positions, paired_ratio, print_table,  # noqa: E402
                     tiny_llava15, with_answer)
from saliency_speed import plain_generate, traced_greedy  # noqa: E402


def organism(args):

    from lvsal_data import load_lvlm

    lvlm = load_lvlm("organism", device=args.device, dtype=args.dtype)
    lvlm.model.generation_config.eos_token_id = None
    from lvsal_data.organism.world import make_scene

    prepared = lvlm.prepare(make_scene("test", 0).render(), "Please describe this image in detail.")
    return lvlm.model, prepared.inputs, prepared.spans


def sgrs(model, inputs, spans, args, all_layers: bool = False) -> int:
    from lvsal_data import default_target_layers, trace_generate
    from lvsal_data.decoding import SGRS

    target = default_target_layers(model.config.get_text_config().num_hidden_layers)
    layers = None if all_layers else target
    trace = trace_generate(model, inputs, spans, SGRS(), max_new_tokens=args.answer, eos_token_ids=[],
                           layers=layers, target_layers=target, generator=torch.Generator().manual_seed(0))
    return len(trace.tokens)


def sgrs_all_layers(model, inputs, spans, args) -> int:
    return sgrs(model, inputs, spans, args, all_layers=True)


def naive_sgrs(model, inputs, spans, args) -> int:
    """K full recomputes per step (forward + backward each), as the release scores candidates."""
    from reference import naive_token_row

    full = with_answer(inputs, args.answer, args.device)
    positions = naive_positions(args)
    for i in positions:
        p = spans.answer_start + i
        for c in range(5):  # K = 5 candidates, each a full recompute
            ids = full["input_ids"].clone()
            ids[0, p] = 5 + c
            naive_token_row(model, dict(full, input_ids=ids), p, 5 + c)
    return len(positions)


def locore_generate(model, inputs, spans, args) -> int:
    from lvsal_data.decoding import locore

    with torch.no_grad(), locore(model, spans.answer_start, beta=0.15):
        out = model.generate(**inputs, max_new_tokens=args.answer, do_sample=False)
    return out.shape[1] - inputs["input_ids"].shape[1]


class Batched:
    """A setup whose prompt is repeated ``size`` times as one batch (picklable for the children)."""

    def __init__(self, setup, size: int) -> None:
        self.setup, self.size = setup, size

    def __call__(self, args):
        model, inputs, spans = self.setup(args)
        batch = {k: torch.cat([v] * self.size, dim=0) if torch.is_tensor(v) else v for k, v in inputs.items()}
        return model, batch, [spans] * self.size


def batch_generate(model, inputs, spans, args) -> int:
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=args.answer, do_sample=False)
    return out.shape[0] * (out.shape[1] - inputs["input_ids"].shape[1])


def batch_locore(model, inputs, spans, args) -> int:
    from lvsal_data.decoding import locore

    with torch.no_grad(), locore(model, spans[0].answer_start, beta=0.15):
        out = model.generate(**inputs, max_new_tokens=args.answer, do_sample=False)
    return out.shape[0] * (out.shape[1] - inputs["input_ids"].shape[1])


def _batch_trace(model, inputs, spans, args, name: str) -> int:
    from lvsal_data.decoding import build_decoder
    from lvsal_data.tracing import trace_batch

    traces = trace_batch(model, inputs, spans, [build_decoder(name) for _ in spans], max_new_tokens=args.answer,
                         eos_token_ids=[], generators=[torch.Generator().manual_seed(b) for b in range(len(spans))])
    return sum(len(t.tokens) for t in traces)


def batch_traced(model, inputs, spans, args) -> int:
    return _batch_trace(model, inputs, spans, args, "greedy")


def batch_sgrs(model, inputs, spans, args) -> int:
    return _batch_trace(model, inputs, spans, args, "sgrs")


def batch_traced_locore(model, inputs, spans, args) -> int:
    return _batch_trace(model, inputs, spans, args, "locore")


BATCH_METHODS = {"generate()": batch_generate, "LocoRE generate()": batch_locore, "traced greedy": batch_traced,
                 "SGRS (all layers traced)": batch_sgrs, "traced LocoRE": batch_traced_locore}


def batch_table(setup, args) -> None:
    """ms per token (amortised) and tokens/s of every method at each batch size, the median of
    --repeats runs; each method's ratio to generate() at the same batch size, its speed-up over
    the first batch size, and its peak memory."""
    methods = {name: BATCH_METHODS[name] for name in args.methods} if args.methods else BATCH_METHODS
    rows = []
    for size in args.batch_sizes:
        measured = {name: (t, peak) for name, t, _, peak in measure(Batched(setup, size), methods, args,
                                                                   statistic="median")}
        rows += [(size, name, t, peak, t / measured["generate()"][0]) for name, (t, peak) in measured.items()]
    first = args.batch_sizes[0]
    base = {name: t for size, name, t, _, _ in rows if size == first}
    print(f"\n{args.answer} answer tokens per sample, {args.device} {args.dtype}, {args.threads} threads, "
          f"median of {args.repeats} runs\n")
    print("| batch | method | ms / token (amortised) | tokens / s | x generate() at this batch | "
          f"speed-up over batch {first} | peak memory (MB) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size, name, t, peak, ratio in rows:
        print(f"| {size} | {name} | {t * 1e3:.2f} | {1 / t:.0f} | {ratio:.2f} | {base[name] / t:.2f} | {peak:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--model", default="tiny", choices=["tiny", "organism", "7b"],
                        help="tiny: LLaVA-1.5-shaped tiny model; organism; "
                             "7b: LLaVA-1.5-7B's shape, random weights (GPU)")
    parser.add_argument("--pairs", type=int, default=5, help="alternating pairs for the paired ratios (0: skip them)")
    parser.add_argument("--batch-sizes", type=lambda v: [int(x) for x in v.split(",")], default=None,
                        help="comma-separated batch sizes: print the batched table instead (e.g. 1,4,16)")
    parser.add_argument("--methods", type=lambda v: [x.strip() for x in v.split(",")], default=None,
                        help="comma-separated methods of the batched table (default: all of "
                             f"{', '.join(BATCH_METHODS)}; generate() is always kept, for the ratios)")
    args = parser.parse_args()
    if args.methods:
        unknown = [m for m in args.methods if m not in BATCH_METHODS]
        if unknown:
            parser.error(f"unknown --methods {unknown}; choose from {list(BATCH_METHODS)}")
        args.methods = ["generate()"] + [m for m in args.methods if m != "generate()"]
    setup = {"tiny": tiny_llava15, "organism": organism, "7b": llava15_7b}[args.model]
    if args.batch_sizes:
        return batch_table(setup, args)
    methods = {"generate() greedy": plain_generate, "LocoRE generate()": locore_generate,
               "traced greedy": traced_greedy, "SGRS": sgrs, "SGRS, all layers traced": sgrs_all_layers,
               "naive SGRS": naive_sgrs}
    rows = measure(setup, methods, args)
    what = {"tiny": "LLaVA-1.5-shaped tiny model (576 image tokens)", "organism": "the organism (64 image tokens)",
            "7b": "LLaVA-1.5-7B shape, random weights (576 image tokens)"}[args.model]
    print(f"\n{what}, {args.answer} answer tokens, {args.device} {args.dtype}, {args.threads} threads\n")
    print_table(rows, {"x generate()": "generate() greedy", "x traced greedy": "traced greedy"})
    per = {name: t for name, t, _, _ in rows}
    print(f"\nSGRS is {per['naive SGRS'] / per['SGRS']:.1f}x faster than the naive SGRS reference per token.")
    if args.pairs < 1:
        return
    print(f"\nRatios with both methods alternating in one process ({args.pairs} pairs; median [min, max]):\n")
    print("| ratio | median | min | max |\n|---|---:|---:|---:|")
    for label, a, b in (("LocoRE generate() / generate()", plain_generate, locore_generate),
                        ("traced greedy / generate()", plain_generate, traced_greedy),
                        ("SGRS, all layers traced / traced greedy", traced_greedy, sgrs_all_layers)):
        r = sorted(paired_ratio(setup, a, b, args, pairs=args.pairs))
        print(f"| {label} | {r[len(r) // 2]:.3f} | {r[0]:.3f} | {r[-1]:.3f} |")


if __name__ == "__main__":
    main()
