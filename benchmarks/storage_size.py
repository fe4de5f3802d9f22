"""Bytes per generated token of a trace dataset, for a 32-layer model (issue target: <= 1 KB per
token without the optional columns).

Collects greedy traces of a tiny random LLaVA with 32 text layers (storage depends on the number
of traced layers, not on the width) over a few synthetic scenes, then divides the size of the
tokens Parquet files by the number of token rows, once per column option. Prints a table.

    python benchmarks/storage_size.py [--layers 32] [--scenes 6] [--max-new-tokens 96]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvsal_data.collect import collect  # noqa: E402
from lvsal_data.config import CollectConfig  # noqa: E402
from lvsal_data.models import load_lvlm  # noqa: E402
from lvsal_data.store import open_traces  # noqa: E402
from lvsal_data.testing import tiny_llava, tiny_llava_processor  # noqa: E402

#: Stored dimensions of the hidden states here (the tiny model is 64 wide; a 7B one is projected to 256).
HIDDEN_DIM = 32
WORDS = ("Please describe this image in detail . a the dog cat frisbee fork knife cup table couch on with "
         "and is at left right top bottom red blue green two three").split()


def column_bytes(root: Path) -> dict[str, float]:
    """Compressed bytes per token row of each column of a trace dataset's tokens table."""
    import pyarrow.parquet as pq

    sizes: dict[str, float] = {}
    n = 0
    for path in (root / "data" / "tokens").glob("*.parquet"):
        meta = pq.ParquetFile(path).metadata
        n += meta.num_rows
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                col = meta.row_group(g).column(c)
                name = col.path_in_schema.split(".")[0]
                sizes[name] = sizes.get(name, 0) + col.total_compressed_size
    return {k: v / n for k, v in sizes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--columns", action="store_true", help="also print bytes per token of each column")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        tiny = tiny_llava(layers=args.layers, image_size=56)
        tiny.model.config.image_token_index = 7  # the processor's <image> id
        tiny.model.generation_config.eos_token_id = None  # random weights: never stop early
        tiny.model.save_pretrained(folder)
        tiny_llava_processor(WORDS, image_size=56).save_pretrained(folder)
        lvlm = load_lvlm(str(folder), device="cpu")
        rows = []
        hidden = {"hidden_states": True, "hidden_dim": HIDDEN_DIM}
        for name, opts in [("default columns", {}), ("+ lookback heads", {"lookback_heads": True}),
                           ("+ saliency rows", {"store_rows": True}),
                           (f"+ hidden states (target layers, D = {HIDDEN_DIM})", hidden)]:
            out = Path(tmp) / name.replace(" ", "_")
            collect(CollectConfig(model=str(folder), data=f"synthetic:split=test,n={args.scenes}", out=str(out),
                                  max_new_tokens=args.max_new_tokens, **opts), lvlm=lvlm)
            traces = open_traces(out)
            n = traces.manifest["rows"]["tokens"]
            size = sum(p.stat().st_size for p in (out / "data" / "tokens").glob("*.parquet"))
            rows.append((name, n, size / n))
            if args.columns and not opts:
                breakdown = column_bytes(out)
            if opts is hidden:
                hidden_layers = len(traces.manifest["hidden"]["layers"])
                per_value = column_bytes(out)["hidden"] / (hidden_layers * HIDDEN_DIM)
    print(f"\ntrace storage, {args.layers}-layer model, {args.scenes} samples x {args.max_new_tokens} tokens "
          f"({tiny.n_image_tokens} image tokens)\n")
    print("| tokens table | token rows | bytes / token |\n|---|---:|---:|")
    for name, n, per in rows:
        print(f"| {name} | {n} | {per:,.0f} |")
    print(f"\nhidden states: {per_value:.2f} bytes per stored value (float16), so at the default --hidden-dim 256 "
          f"a token costs about {per_value * 256:,.0f} bytes per hidden layer ({hidden_layers} layers kept by default "
          f"here: {per_value * 256 * hidden_layers:,.0f} bytes)")
    if args.columns:
        print("\n| column (default set) | bytes / token |\n|---|---:|")
        for col, per in sorted(breakdown.items(), key=lambda kv: -kv[1]):
            print(f"| {col} | {per:.1f} |")


if __name__ == "__main__":
    main()
