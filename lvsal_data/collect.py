"""The collector: run an LVLM over a source and write a trace dataset.

One typed config (:class:`~lvsal_data.config.CollectConfig`) drives a run; its settings are
resolved once (:func:`resolve_run`) and written into the manifest. Under ``torchrun`` /
``accelerate launch`` each rank takes every ``world_size``-th sample and writes its own shards
into the same folder; rank 0 merges the manifest after a barrier. Each sample's randomness comes
from a seed derived from (seed, sample id), so the rows do not depend on how samples are split
over ranks or resumed.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .attention import decoder_layers
from .config import DEFAULT_MAX_NEW_TOKENS, CollectConfig, load_calibration, sgrs_settings, with_calibration
from .decoding import Decoder, build_decoder
from .errors import InputError
from .kvcache import CHUNK
from .models import LVLM, load_lvlm
from .prompts import resolve_system_prompt
from .records import build_rows
from .schema import tokens_schema
from .sources import ImageLoadError, Sample, Source, open_source
from .store import ShardWriter, check_output_folder, merge_manifest
from .scoring import LinearDetector
from .tracing import default_layers, hidden_projection, trace_batch

log = logging.getLogger(__name__)
Row = dict[str, Any]


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
class RunSettings:
    """A run's settings, resolved once from its config, its calibration, its source and its model."""

    max_new_tokens: int
    system_prompt: str | None
    layers: list[int]
    target_layers: list[int]
    notes: list[str]  # explicit options that overrode the calibration, one line each
    hidden_layers: list[int] | None = None  # decoder layers whose hidden states are kept (--hidden-states)
    projection: torch.Tensor | None = None  # their fixed random projection (None: kept whole)
    detector: LinearDetector | None = None  # scores every token (--detector)


def resolve_run(cfg: CollectConfig, source: Source, lvlm: LVLM, calibration: dict[str, Any] | None) -> RunSettings:
    """Resolve every setting of a run once: an explicit option, else the calibration file, else
    the source's protocol, else the default. Layers default to those with self-attention (all
    of them, but for hybrid models' linear-attention layers)."""
    traced, default_target = default_layers(lvlm.model)
    target, note = with_calibration("--target-layers", cfg.target_layers, calibration, "target_layers",
                                    default_target)
    notes = sgrs_settings(cfg, calibration)[2] + ([note] if note else [])
    settings = RunSettings(
        max_new_tokens=cfg.max_new_tokens or source.protocol().get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS,
        system_prompt=resolve_system_prompt(cfg.system_prompt, lvlm.standard_system_prompt),
        layers=list(cfg.layers) if cfg.layers is not None else traced,
        target_layers=[int(l) for l in target], notes=notes)
    if cfg.hidden_states:
        n_layers = len(decoder_layers(lvlm.model))
        settings.hidden_layers = list(cfg.hidden_layers) if cfg.hidden_layers is not None else settings.target_layers
        bad = [l for l in settings.hidden_layers if not 0 <= l < n_layers]
        if bad:  # validate_collect checks explicit ones; a calibration's target layers land here
            raise InputError(f"hidden-state layers {bad} out of range: {cfg.model} has decoder layers "
                             f"0..{n_layers - 1}")
        hidden_size = lvlm.model.config.get_text_config().hidden_size
        settings.projection = hidden_projection(hidden_size, cfg.hidden_dim, HIDDEN_PROJECTION_SEED)
    if cfg.detector:
        settings.detector = _run_detector(cfg, settings)
    return settings


#: Seed of the fixed random projection of stored hidden states (in the manifest): every run
#: projects a model's states alike, so detectors on hidden states transfer between datasets.
HIDDEN_PROJECTION_SEED = 0


def _run_detector(cfg: CollectConfig, settings: RunSettings) -> LinearDetector:
    """The ``--detector`` of a run (its columns checked by :func:`~lvsal_data.validation.check_detector`),
    refused if the run traces other layers or keeps other hidden states than its training traces."""
    from .validation import check_detector

    detector = check_detector(cfg)
    fitted = detector.meta.get("layers")
    if fitted is not None and list(fitted) != list(settings.layers):
        raise InputError(f"the detector {cfg.detector} was fitted on traces of layers {fitted}; this run traces "
                         f"{settings.layers} (pass --layers)")
    hidden = detector.meta.get("hidden") if detector.reads("hidden") else None
    if hidden and (hidden.get("layers") != settings.hidden_layers or hidden.get("dim") != cfg.hidden_dim):
        raise InputError(f"the detector {cfg.detector} reads hidden states of layers {hidden.get('layers')} at "
                         f"dimension {hidden.get('dim')}; this run keeps layers {settings.hidden_layers} at "
                         f"{cfg.hidden_dim} (pass --hidden-layers / --hidden-dim)")
    return detector


@dataclass
class RunSummary:
    out: Path
    samples: int = 0
    tokens: int = 0
    skipped: int = 0
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None


def collect(cfg: CollectConfig, lvlm: LVLM | None = None, decoder: Decoder | None = None,
            progress: bool = True, calibration: dict[str, Any] | None = None,
            desc: str | None = None) -> RunSummary:
    """Run ``cfg``: trace every sample, write shards, merge the manifest (rank 0).

    Args:
        cfg: The run's configuration.
        lvlm: An already loaded model (default: ``load_lvlm(cfg.model, ...)``).
        decoder: A configured decoder (default: ``cfg.decoding`` built from ``cfg``).
        progress: Show a progress bar.
        calibration: ``cfg.calibration`` already read (verify reads it once for every decoding).
        desc: The progress bar's name (default ``collect``; verify names its step and decoding).

    Returns:
        A :class:`RunSummary` (its manifest is set on rank 0).
    """
    from .validation import validate_collect  # every option, before anything is written (issue 19)
    validate_collect(cfg, lvlm)
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {cfg.max_new_tokens}")
    if cfg.shard_size < 1:
        raise InputError(f"--shard-size must be >= 1, got {cfg.shard_size}")
    parse_batch_size(cfg.batch_size)  # a bad value is refused before anything is written
    rank, world, local_rank = dist_info()
    dist = world > 1
    if dist and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    if rank == 0:
        check_output_folder(cfg.out, cfg.resume)  # before the model loads: refusing must be quick
    if calibration is None and cfg.calibration:
        calibration = load_calibration(cfg.calibration)
    decoder = decoder or build_decoder(cfg.decoding, cfg, calibration)
    source = open_source(cfg.data)
    samples = list(source)
    if cfg.limit is not None:
        samples = samples[: cfg.limit]
    device = cfg.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    lvlm = lvlm or load_lvlm(cfg.model, device=device, dtype=cfg.dtype, revision=cfg.revision,
                             trust_remote_code=cfg.trust_remote_code)
    settings = resolve_run(cfg, source, lvlm, calibration)
    for note in settings.notes if rank == 0 else ():
        log.warning(note)

    identity = {**cfg.run_identity(), "decoding_params": decoder.params(), "world_size": world}
    writer = ShardWriter(Path(cfg.out), identity,
                         tokens_schema(cfg.store_rows, cfg.lookback_heads, cfg.hidden_states, bool(cfg.detector)),
                         resume=cfg.resume, rank=rank, world_size=world)
    if rank == 0:
        writer.prepare()
    if dist:
        torch.distributed.barrier()
    writer.open()
    summary = _run_shards(cfg, lvlm, decoder, settings, writer, samples[rank::world],
                          desc=(desc or "collect") + (f"[{rank}]" if dist else ""), progress=progress)
    if dist:
        torch.distributed.barrier()
    if rank == 0:
        summary.manifest = merge_manifest(Path(cfg.out), _provenance(cfg, lvlm, source, decoder, settings))
        from .hub import write_card

        write_card(Path(cfg.out))
    return summary


def trace_samples(cfg: CollectConfig, lvlm: LVLM, decoder: Decoder, settings: RunSettings,
                  samples: Sequence[Sample], images: Sequence[Any]) -> list[tuple[list[dict[str, Any]], Row]]:
    """Token rows and the sample row of each sample with its loaded image, traced as one batch.

    Each sample gets its own copy of ``decoder`` and its own seeded generator, so its rows are
    those of its batch-1 run whatever shares its batch.
    """
    prepared = lvlm.prepare_batch(images, [s.prompt for s in samples], settings.system_prompt)
    seeds = [sample_seed(cfg.seed, s.id) for s in samples]
    traces = trace_batch(lvlm.model, prepared.inputs, prepared.spans, [copy.copy(decoder) for _ in samples],
                         max_new_tokens=settings.max_new_tokens, layers=settings.layers,
                         target_layers=settings.target_layers,
                         generators=[torch.Generator().manual_seed(seed) for seed in seeds],
                         keep_rows=cfg.store_rows, lookback=cfg.lookback_heads, hidden_layers=settings.hidden_layers,
                         hidden_projection=settings.projection, tokenizer=lvlm.tokenizer)
    results = [build_rows(sample, trace, prepared.unpadded_spans(b), lvlm.tokenizer, cfg.decoding, seed,
                          cfg.store_rows, cfg.lookback_heads)
               for b, (sample, trace, seed) in enumerate(zip(samples, traces, seeds))]
    if settings.detector is not None:  # each token from its own step's features, as the detector was fitted
        for tokens, _ in results:
            if tokens:
                p = settings.detector.score_rows(pd.DataFrame(tokens), f"the tokens of {cfg.model}")
                for row, value in zip(tokens, p.tolist()):
                    row["p_hallucinated"] = value
    return results


def trace_sample(cfg: CollectConfig, lvlm: LVLM, decoder: Decoder, settings: RunSettings, sample: Sample,
                 image: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Token rows and the sample row of one sample with its loaded image."""
    return trace_samples(cfg, lvlm, decoder, settings, [sample], [image])[0]


def _batches(lvlm: LVLM, settings: RunSettings, loaded: list[tuple[int, Sample, Any]],
             size: int) -> Iterator[list[tuple[int, Sample, Any]]]:
    """``loaded`` (index in the shard, sample, image) in batches of ``size``, sorted by prompt
    length so that a batch wastes little padding (a batch of one keeps the shard's order).

    A prompt's length depends on its text and its image's size only (a processor expands an
    image into a number of tokens set by its size), so one prompt per (image size, text) is
    prepared to measure it, not every sample (each batch is prepared again to be traced). The
    order only sets which samples share a batch, never their rows."""
    if size > 1 and len(loaded) > 1:
        known: dict[tuple[Any, str], int] = {}
        lengths = []
        for _, sample, image in loaded:
            key = (_image_size(image), sample.prompt)
            if key not in known:
                known[key] = lvlm.prepare(image, sample.prompt, settings.system_prompt).inputs["input_ids"].shape[-1]
            lengths.append(known[key])
        loaded = [loaded[i] for i in sorted(range(len(loaded)), key=lambda i: lengths[i])]
    for k in range(0, len(loaded), size):
        yield loaded[k : k + size]


def _image_size(image: Any) -> tuple[int, ...]:
    """A PIL image's (width, height), any other image's array shape."""
    size = getattr(image, "size", None)
    return tuple(size) if isinstance(size, tuple) else tuple(np.shape(image))


def _run_shards(cfg: CollectConfig, lvlm: LVLM, decoder: Decoder, settings: RunSettings, writer: ShardWriter,
                mine: Sequence[Sample], desc: str, progress: bool) -> RunSummary:
    """Trace this rank's samples shard by shard, in batches, skipping the shards a resumed run has.

    A shard's rows are written in the source's order whatever the batch size.
    """
    summary = RunSummary(out=Path(cfg.out))
    started = time.time()
    hall = mentions = 0
    size = resolve_batch_size(cfg.batch_size, lvlm)
    bar = tqdm(total=len(mine), desc=desc, unit="sample", disable=not progress)
    for index, chunk in _chunks(mine, cfg.shard_size):
        if writer.is_done(index):
            bar.update(len(chunk))
            continue
        results: dict[int, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
        skipped: list[dict[str, str]] = []
        loaded: list[tuple[int, Sample, Any]] = []
        for i, sample in enumerate(chunk):
            try:
                loaded.append((i, sample, sample.load_image()))
            except ImageLoadError as err:
                skipped.append({"sample_id": sample.id, "reason": str(err)})
                tqdm.write(f"skipped {sample.id}: {err}")
                bar.update(1)
        for batch in _batches(lvlm, settings, loaded, size):
            rows = trace_samples(cfg, lvlm, decoder, settings, [s for _, s, _ in batch], [im for _, _, im in batch])
            for (i, _, _), (toks, srow) in zip(batch, rows):
                results[i] = (toks, srow)
                summary.tokens += len(toks)
                hall += srow["n_hallucinated_mentions"]
                mentions += srow["n_mentions"]
            elapsed = max(time.time() - started, 1e-9)
            bar.set_postfix(tok_s=f"{summary.tokens / elapsed:.1f}",
                            hall=f"{hall / mentions:.1%}" if mentions else "n/a")
            bar.update(len(batch))
        ordered = [results[i] for i in sorted(results)]
        writer.write_shard(index, [t for toks, _ in ordered for t in toks], [srow for _, srow in ordered], skipped)
        summary.samples += len(ordered)
        summary.skipped += len(skipped)
    bar.close()
    summary.seconds = time.time() - started
    return summary


def resolve_batch_size(option: str | int, lvlm: LVLM) -> int:
    """``--batch-size``: a positive number, or ``auto`` (on CPU 4: the one-token step is too small
    to keep the cores busy alone; on a GPU the largest batch whose KV cache and step fit in the
    free memory, estimated from the model's shape; see :func:`auto_batch_size`)."""
    size = parse_batch_size(option)
    return auto_batch_size(lvlm) if size == "auto" else size


def parse_batch_size(option: str | int) -> int | str:
    """``--batch-size`` checked: a positive int, or ``"auto"``.

    Example:
        >>> parse_batch_size("8"), parse_batch_size("auto")
        (8, 'auto')
    """
    if str(option) == "auto":
        return "auto"
    try:
        size = int(option)
    except ValueError:
        raise InputError(f"--batch-size must be a positive number or 'auto', got {option!r}") from None
    if size < 1:
        raise InputError(f"--batch-size must be >= 1, got {size}")
    return size


def auto_batch_size(lvlm: LVLM, answer_tokens: int = 512, cap: int = 32) -> int:
    """The batch size ``--batch-size auto`` picks: 4 on CPU; on CUDA, the free memory (less a
    quarter of headroom) over one sample's estimated footprint: its KV cache at a 7B-typical prompt
    of 640 tokens plus ``answer_tokens``, times 3 for the step's live graph, plus the spare room
    of the growing cache (:data:`lvsal_data.kvcache.CHUNK` tokens), capped at ``cap``."""
    if lvlm.device.type != "cuda":
        return 4
    text = lvlm.model.config.get_text_config()
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    per_token = 2 * text.num_hidden_layers * heads * head_dim * lvlm.dtype.itemsize
    free, _ = torch.cuda.mem_get_info(lvlm.device)
    per_sample = per_token * (3 * (640 + answer_tokens) + CHUNK)
    return max(1, min(cap, int(0.75 * free // per_sample)))


def _provenance(cfg: CollectConfig, lvlm: LVLM, source: Source, decoder: Decoder,
                settings: RunSettings) -> dict[str, Any]:
    """What the manifest records besides the shards: model, settings, source, protocol, versions."""
    text = lvlm.model.config.get_text_config()
    return {
        "model": {"id": cfg.model, "revision": cfg.revision, "class": type(lvlm.model).__name__,
                  "model_type": lvlm.model.config.model_type, "dtype": str(lvlm.dtype).replace("torch.", ""),
                  "num_layers": lvlm.num_layers, "num_heads": text.num_attention_heads},
        "layers": settings.layers, "target_layers": settings.target_layers,
        "source": {"spec": cfg.data, **source.describe()},
        "protocol": {**source.protocol(), "max_new_tokens": settings.max_new_tokens,
                     "system_prompt": settings.system_prompt,
                     "chat_template_example": lvlm.chat_prompt("{prompt}", settings.system_prompt)},
        "decoding": {"name": cfg.decoding, "params": decoder.params()},
        "hidden": ({"layers": settings.hidden_layers, "dim": cfg.hidden_dim, "hidden_size": text.hidden_size,
                    "projected": settings.projection is not None, "projection": "gaussian N(0, 1/dim)",
                    "projection_seed": HIDDEN_PROJECTION_SEED} if cfg.hidden_states else None),
        "detector": ({"path": cfg.detector, "feature_set": settings.detector.feature_set,
                      "n_features": len(settings.detector.feature_names)} if settings.detector else None),
        "settings_notes": settings.notes,
        "max_new_tokens": settings.max_new_tokens, "seed": cfg.seed,
        "versions": versions(), "git": git_hash(), "command": "lvsal " + shlex.join(sys.argv[1:]),
    }
