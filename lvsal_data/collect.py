"""The collector: run an LVLM over a source and write a trace dataset.

One typed config (:class:`CollectConfig`) drives a run; the CLI is built from it and it is
written into the manifest. Under ``torchrun`` / ``accelerate launch`` each rank takes every
``world_size``-th sample and writes its own shards into the same folder; rank 0 merges the
manifest after a barrier. Each sample's randomness comes from a seed derived from (seed,
sample id), so the rows do not depend on how samples are split over ranks or resumed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from .decoding import SGRS_ALPHA, SGRS_WINDOW, Decoder, DecodingOptions, build_decoder, load_calibration, with_calibration
from .errors import InputError
from .models import LVLM, load_lvlm
from .prompts import resolve_system_prompt
from .records import build_rows
from .saliency import default_target_layers
from .schema import tokens_schema
from .sources import ImageLoadError, Sample, open_source
from .store import ShardWriter, check_output_folder, merge_manifest
from .tracing import trace_generate

log = logging.getLogger(__name__)


#: Answer length cap when neither the option nor the source's protocol sets one.
DEFAULT_MAX_NEW_TOKENS = 64


@dataclass
class CollectConfig(DecodingOptions):
    """Everything that defines a collection run (written into the manifest)."""

    model: str = field(default="organism", metadata={"help": "local folder, Hub id, or 'organism'"})
    data: str = field(default="synthetic", metadata={"help": "synthetic[:k=v,..], coco:DIR, pope:FILE, amber:DIR or a dataset folder"})
    out: str = field(default="traces", metadata={"help": "output dataset folder"})
    decoding: str = field(default="greedy", metadata={"help": "decoding strategy", "choices": "decodings"})
    limit: int | None = field(default=None, metadata={"help": "at most N samples"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": f"answer length cap, the same for every method (default: the source protocol's, e.g. 512 for "
                f"coco, 128 for pope; else {DEFAULT_MAX_NEW_TOKENS})"})
    system_prompt: str | None = field(default=None, metadata={
        "help": "system message before each prompt: TEXT, or 'none' (default: the model's standard one, e.g. "
                "Vicuna's for LLaVA-1.5; none for the organism)"})
    seed: int = field(default=0, metadata={"help": "seed of sampling decodings"})
    resume: bool = field(default=False, metadata={"help": "continue a killed run in --out"})
    store_rows: bool = field(default=False, metadata={"help": "keep each token's layer-mean saliency row (float16)"})
    lookback_heads: bool = field(default=False, metadata={"help": "keep per-head Lookback-Lens ratios"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 (default: cuda if available)"})
    dtype: str | None = field(default=None, metadata={"help": "float32, float16 or bfloat16"})
    layers: list[int] | None = field(default=None, metadata={"help": "traced layers (default: all)"})
    target_layers: list[int] | None = field(default=None, metadata={
        "help": "Eq. 6 layers (default: the calibration's, else floor(6L/32)..floor(8L/32))"})
    shard_size: int = field(default=32, metadata={"help": "samples per Parquet shard"})
    revision: str | None = field(default=None, metadata={"help": "model revision on the Hub"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow the model repository's own code"})

    def run_identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the original."""
        d = asdict(self)
        for key in ("resume", "out", "device"):
            d.pop(key)
        return d


def sample_seed(seed: int, sample_id: str) -> int:
    """A per-sample seed from the run seed and the sample id (rank- and order-independent)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{sample_id}".encode()).digest()[:8], "little") >> 1


def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun / accelerate environment variables."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def versions() -> dict[str, str]:
    import datasets
    import pyarrow
    import transformers

    from . import __version__

    return {"lvsal-data": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "pyarrow": pyarrow.__version__, "python": platform.python_version()}


def git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _chunks(items: Sequence[Sample], size: int) -> Iterator[tuple[int, Sequence[Sample]]]:
    for k in range(0, len(items), size):
        yield k // size, items[k : k + size]


@dataclass
class RunSummary:
    out: Path
    samples: int = 0
    tokens: int = 0
    skipped: int = 0
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None


def collect(cfg: CollectConfig, lvlm: LVLM | None = None, decoder: Decoder | None = None,
            progress: bool = True) -> RunSummary:
    """Run ``cfg``: trace every sample, write shards, merge the manifest (rank 0).

    Args:
        cfg: The run's configuration.
        lvlm: An already loaded model (default: ``load_lvlm(cfg.model, ...)``).
        decoder: A configured decoder (default: ``DECODINGS[cfg.decoding]()``).
        progress: Show a progress bar.

    Returns:
        A :class:`RunSummary` (its manifest is set on rank 0).
    """
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {cfg.max_new_tokens}")
    if cfg.shard_size < 1:
        raise InputError(f"--shard-size must be >= 1, got {cfg.shard_size}")
    rank, world, local_rank = dist_info()
    dist = world > 1
    if dist and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    if rank == 0:
        check_output_folder(cfg.out, cfg.resume)  # before the model loads: refusing must be quick
    calibration = load_calibration(cfg.calibration) if cfg.calibration else None
    notes = [note for note in (with_calibration("--sgrs-alpha", cfg.sgrs_alpha, calibration, "alpha", SGRS_ALPHA)[1],
                               with_calibration("--sgrs-window", cfg.sgrs_window, calibration, "window", SGRS_WINDOW)[1])
             if note]
    decoder = decoder or build_decoder(cfg.decoding, cfg, calibration)
    source = open_source(cfg.data)
    protocol = source.protocol()
    max_new_tokens = cfg.max_new_tokens or protocol.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
    samples = list(source)
    if cfg.limit is not None:
        samples = samples[: cfg.limit]
    device = cfg.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    lvlm = lvlm or load_lvlm(cfg.model, device=device, dtype=cfg.dtype, revision=cfg.revision,
                             trust_remote_code=cfg.trust_remote_code)
    system_prompt = resolve_system_prompt(cfg.system_prompt, lvlm.standard_system_prompt)
    n_layers = lvlm.num_layers
    layers = cfg.layers if cfg.layers is not None else list(range(n_layers))
    target, note = with_calibration("--target-layers", cfg.target_layers, calibration, "target_layers",
                                    default_target_layers(n_layers))
    target = [int(l) for l in target]
    notes += [note] if note else []
    for note in notes if rank == 0 else ():
        log.warning(note)

    identity = {**cfg.run_identity(), "decoding_params": decoder.params(), "world_size": world}
    writer = ShardWriter(Path(cfg.out), identity, tokens_schema(cfg.store_rows, cfg.lookback_heads),
                         resume=cfg.resume, rank=rank, world_size=world)
    if rank == 0:
        writer.prepare()
    if dist:
        torch.distributed.barrier()
    writer.open()

    mine = samples[rank::world]
    summary = RunSummary(out=Path(cfg.out))
    started = time.time()
    hall = mentions = 0
    bar = tqdm(total=len(mine), desc=f"collect[{rank}]" if dist else "collect", unit="sample", disable=not progress)
    for index, chunk in _chunks(mine, cfg.shard_size):
        if writer.is_done(index):
            bar.update(len(chunk))
            continue
        token_rows: list[dict[str, Any]] = []
        sample_rows: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for sample in chunk:
            try:
                image = sample.load_image()
            except ImageLoadError as err:
                skipped.append({"sample_id": sample.id, "reason": str(err)})
                tqdm.write(f"skipped {sample.id}: {err}")
                bar.update(1)
                continue
            prepared = lvlm.prepare(image, sample.prompt, system_prompt)
            seed = sample_seed(cfg.seed, sample.id)
            trace = trace_generate(lvlm.model, prepared.inputs, prepared.spans, decoder,
                                   max_new_tokens=max_new_tokens, layers=layers, target_layers=target,
                                   generator=torch.Generator().manual_seed(seed), keep_rows=cfg.store_rows,
                                   lookback=cfg.lookback_heads)
            toks, srow = build_rows(sample, trace, prepared.spans, lvlm.tokenizer, cfg.decoding, seed,
                                    cfg.store_rows, cfg.lookback_heads)
            token_rows += toks
            sample_rows.append(srow)
            summary.tokens += len(toks)
            hall += srow["n_hallucinated_mentions"]
            mentions += srow["n_mentions"]
            elapsed = max(time.time() - started, 1e-9)
            bar.set_postfix(tok_s=f"{summary.tokens / elapsed:.1f}",
                            hall=f"{hall / mentions:.1%}" if mentions else "n/a")
            bar.update(1)
        writer.write_shard(index, token_rows, sample_rows, skipped)
        summary.samples += len(sample_rows)
        summary.skipped += len(skipped)
    bar.close()
    summary.seconds = time.time() - started
    if dist:
        torch.distributed.barrier()
    if rank == 0:
        extra = {
            "model": {"id": cfg.model, "revision": cfg.revision, "class": type(lvlm.model).__name__,
                      "model_type": lvlm.model.config.model_type, "dtype": str(lvlm.dtype).replace("torch.", ""),
                      "num_layers": n_layers, "num_heads": lvlm.model.config.get_text_config().num_attention_heads},
            "layers": layers, "target_layers": target,
            "source": {"spec": cfg.data, **source.describe()},
            "protocol": {**protocol, "max_new_tokens": max_new_tokens, "system_prompt": system_prompt,
                         "chat_template_example": lvlm.chat_prompt("{prompt}", system_prompt)},
            "decoding": {"name": cfg.decoding, "params": decoder.params()},
            "settings_notes": notes,
            "max_new_tokens": max_new_tokens, "seed": cfg.seed,
            "versions": versions(), "git": git_hash(), "command": " ".join(sys.argv),
        }
        summary.manifest = merge_manifest(Path(cfg.out), extra)
        from .hub import write_card

        write_card(Path(cfg.out))
    return summary
