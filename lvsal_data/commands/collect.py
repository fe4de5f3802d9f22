"""``lvsal collect``: run an LVLM over an annotated set and write a trace dataset."""

from __future__ import annotations

from ..config import CollectConfig
from .options import Command


def run(cfg: CollectConfig) -> int:
    from ..collect import collect
    from ..errors import InputError
    from ..hub import headline_metrics
    from ..metrics import format_estimate
    from ..store import open_traces

    summary = collect(cfg)
    m = summary.manifest
    if m is None:  # not rank 0
        return 0
    if m["rows"]["samples"] == 0:  # every image skipped: an empty dataset is no result
        reasons = "; ".join(f"{s['sample_id']}: {s['reason']}" for s in m["skipped"][:2])
        raise InputError(f"collected no samples ({len(m['skipped'])} skipped: {reasons}); {cfg.out} holds an empty "
                         "run: fix the data and collect into another --out")
    total_bytes = sum(e["bytes"] for e in m["shards"]["tokens"])
    tokens = m["rows"]["tokens"]
    print(f"collected {m['rows']['samples']} samples, {tokens} tokens ({tokens / max(summary.seconds, 1e-9):.1f} "
          f"tokens/s), {len(m['skipped'])} skipped; {total_bytes / max(tokens, 1):.0f} bytes/token on disk")
    metrics = headline_metrics(open_traces(cfg.out))
    if "chair" in metrics:
        c = metrics["chair"]
        print(f"CHAIR_S {format_estimate(c['chair_s'])}%, CHAIR_I {format_estimate(c['chair_i'])}% (n={c['n']})")
    if "pope" in metrics:
        p = metrics["pope"]
        print(f"POPE accuracy {format_estimate(p['pope_accuracy'])}% (n={p['n']}, {p['n_images']} images)")
    print(f"trace dataset: {cfg.out}")
    return 0


COMMAND = Command("collect", "run an LVLM over an annotated set and write a trace dataset (Parquet)",
                  CollectConfig, run)
