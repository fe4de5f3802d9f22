"""Profile the traced one-token step: where a batch's step spends its time, and how busy the GPU is.

Issue 17 asks to measure before taking the launch overhead out of the step (a static KV cache,
CUDA-graph capture or ``torch.compile``). This script gives that measurement in one run: it
traces a batch of B copies of the benchmark prompt with ``trace_batch`` (traced greedy or SGRS)
for ``--answer`` tokens under ``torch.profiler``, and reads the steady steps: the window from
the end of the first token's saliency backward to the end of the last one's holds exactly
``--answer - 1`` whole steps and no prefill (each window edge follows the rows' copy to the
host, so no kernel launched outside it runs inside it). Per step it prints:

- wall ms (and amortised per answer token: over B);
- on a GPU, the kernels and memory operations run and the GPU-busy ms (the sum of their
  durations), so busy / wall says whether the step is bound by launches or by the GPU;
- the top-level ATen operators (each one a trip through the dispatcher, and on a GPU at least
  one launch), and the split of wall time and operators into the step's phases: the model's
  forward, the saliency backward with its rows, the per-token summaries, and the rest (the
  decoder's choice, the batch's bookkeeping); an operator counts in the phase open when it
  started, on any thread (on a GPU the backward runs on autograd's device thread);

then the operators taking the most self time in the window's run, and, with ``--trace FILE``,
its Chrome trace (open in ``chrome://tracing`` or Perfetto).

    python benchmarks/profile_step.py --batch 16                                # tiny LLaVA-1.5 shape, CPU
    python benchmarks/profile_step.py --model 7b --device cuda --dtype bfloat16 --batch 16 --trace step.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decoding_speed import Batched  # noqa: E402
from harness import add_common_arguments, llava15_7b, tiny_llava15  # noqa: E402

#: Device-side event types: kernels and memory operations the GPU runs.
DEVICE_TYPES = (DeviceType.CUDA, DeviceType.PrivateUse1)
PHASE = "phase: "
#: ``time.perf_counter()`` at the end of each saliency backward (the steady window's edges).
BACKWARD_ENDS: list[float] = []


def label_phases() -> list[str]:
    """Wrap the step's phases in profiler ranges (this process only); returns their names."""
    import functools

    from lvsal_data import saliency, tracing

    phases = {"forward": (saliency.SaliencyEngine, "_forward"), "saliency backward": (saliency.Step, "saliency"),
              "summaries": (tracing, "summarize_batch")}
    for name, (owner, attr) in phases.items():
        original = getattr(owner, attr)

        def wrapped(*a, _original=original, _name=name, **kw):
            with record_function(PHASE + _name):
                out = _original(*a, **kw)
            if _name == "saliency backward":
                BACKWARD_ENDS.append(time.perf_counter())
            return out

        setattr(owner, attr, functools.wraps(original)(wrapped))
    return list(phases)


def _phase_ranges(events) -> list[tuple[float, float, str]]:
    """(start, end, phase) of every phase range, in order of start (the ranges do not nest). Only
    the host's: with CUDA on, the profiler also records each range on the GPU timeline under the
    same name."""
    return sorted((e.time_range.start, e.time_range.end, e.name[len(PHASE):]) for e in events
                  if e.device_type == DeviceType.CPU and e.name.startswith(PHASE))


def _phase_of(ranges, starts, t: float) -> str:
    import bisect

    i = bisect.bisect_right(starts, t) - 1
    return ranges[i][2] if i >= 0 and t < ranges[i][1] else "other"


def run(model, inputs, spans, decoding: str, tokens: int) -> None:
    from lvsal_data.decoding import build_decoder
    from lvsal_data.tracing import trace_batch

    trace_batch(model, inputs, spans, [build_decoder(decoding) for _ in spans], max_new_tokens=tokens,
                eos_token_ids=[], generators=[torch.Generator().manual_seed(b) for b in range(len(spans))])


def profiled(model, inputs, spans, args, device: torch.device) -> tuple[dict[str, float], object]:
    """One profiled run of ``--answer`` tokens; per-step figures of its steady window, the profiler."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run(model, inputs, spans, args.decoding, args.answer)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.events()
    ranges = _phase_ranges(events)
    backward = [r for r in ranges if r[2] == "saliency backward"]
    lo, hi = backward[0][1], backward[-1][1]
    steps = len(backward) - 1
    if steps != args.answer - 1:
        raise RuntimeError(f"found {steps + 1} saliency backward ranges for {args.answer} tokens")

    def inside(e) -> bool:
        return lo <= e.time_range.start < hi

    starts = [r[0] for r in ranges]
    per: dict[str, float] = {"steps": steps, "wall_ms": (hi - lo) / 1e3 / steps}
    on_device = [e for e in events if e.device_type in DEVICE_TYPES and inside(e) and not e.name.startswith(PHASE)]
    per["kernels"] = len(on_device) / steps
    per["busy_ms"] = sum(e.device_time_total for e in on_device) / 1e3 / steps
    for e in events:
        if e.device_type == DeviceType.CPU and e.name.startswith("aten::") and inside(e) \
                and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")):
            key = f"ops {_phase_of(ranges, starts, e.time_range.start)}"
            per[key] = per.get(key, 0) + 1 / steps
            per["ops"] = per.get("ops", 0) + 1 / steps
    for start, end, name in ranges:
        if lo <= start < hi:
            per[f"ms {name}"] = per.get(f"ms {name}", 0) + (end - start) / 1e3 / steps
    return per, prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.set_defaults(answer=32)
    parser.add_argument("--model", default="tiny", choices=["tiny", "7b"],
                        help="tiny: LLaVA-1.5-shaped tiny model; 7b: LLaVA-1.5-7B's shape, random weights (GPU)")
    parser.add_argument("--batch", type=int, default=16, help="answers traced together")
    parser.add_argument("--decoding", default="greedy", choices=["greedy", "sgrs"])
    parser.add_argument("--warmup", type=int, default=4, help="answer tokens of the unprofiled warm-up run")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    parser.add_argument("--trace", type=Path, default=None, help="write the profiled run's Chrome trace here")
    args = parser.parse_args()
    if args.answer < 3:
        parser.error("--answer must be >= 3 (the steady window holds --answer - 1 steps)")
    torch.set_num_threads(args.threads)
    setup = llava15_7b if args.model == "7b" else tiny_llava15
    model, inputs, spans = Batched(setup, args.batch)(args)
    device = next(model.parameters()).device
    phases = label_phases()
    run(model, inputs, spans, args.decoding, args.warmup)
    BACKWARD_ENDS.clear()
    run(model, inputs, spans, args.decoding, args.answer)  # the same run without the profiler's overhead
    plain_ms = (BACKWARD_ENDS[-1] - BACKWARD_ENDS[0]) / (len(BACKWARD_ENDS) - 1) * 1e3
    per, prof = profiled(model, inputs, spans, args, device)
    cuda = device.type == "cuda"
    print(f"\n{args.model} model, {device.type} {args.dtype}, batch {args.batch}, {args.decoding}, "
          f"{args.threads} threads; the mean of {per['steps']:.0f} steady steps\n")
    print("| per step | value |\n|---|---:|")
    print(f"| wall ms, unprofiled | {plain_ms:.2f} |")
    print(f"| wall ms, profiled (what the rest of the table divides up) | {per['wall_ms']:.2f} |")
    print(f"| wall ms per answer token, unprofiled (amortised over the batch) | {plain_ms / args.batch:.3f} |")
    print(f"| top-level ATen operators | {per.get('ops', 0):.0f} |")
    if cuda:
        print(f"| GPU kernels and memory operations | {per['kernels']:.0f} |")
        print(f"| GPU busy ms | {per['busy_ms']:.2f} |")
        busy = per["busy_ms"]
        print(f"| GPU busy / profiled wall (the profiler slows the host: a floor) | {busy / per['wall_ms']:.0%} |")
        print(f"| GPU busy / unprofiled wall (kernels as fast as profiled: a ceiling) | {busy / plain_ms:.0%} |")
    print("\n| phase, per step | wall ms | top-level ATen operators |\n|---|---:|---:|")
    timed = sum(per.get(f"ms {p}", 0) for p in phases)
    for p in phases + ["other"]:
        ms = per["wall_ms"] - timed if p == "other" else per.get(f"ms {p}", 0)
        print(f"| {p} | {ms:.2f} | {per.get(f'ops {p}', 0):.0f} |")
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nOperators of the profiled run ({args.answer} tokens, prefill included) by {sort}:\n")
    averages = prof.key_averages()
    try:  # without the phase ranges, which would top the list (they hold whole phases)
        from torch.autograd.profiler_util import EventList

        averages = EventList([a for a in averages if not a.key.startswith(PHASE)], use_device=averages._use_device)
    except (ImportError, AttributeError, TypeError):
        pass
    print(averages.table(sort_by=sort, row_limit=args.top))
    if args.trace is not None:
        prof.export_chrome_trace(str(args.trace))
        print(f"Chrome trace: {args.trace}")


if __name__ == "__main__":
    main()
