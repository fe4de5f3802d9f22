"""Generate an answer and trace every token: one backward per generated token.

The loop prefills the prompt once (no gradients), then for each step feeds the previous token
with gradients on, lets the decoder pick the next token and reads that token's saliency rows
from the same step (see :mod:`lvsal_data.saliency`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from .aggregates import TokenSummary, summarize
from .decoding.base import Context, Decoder, Greedy
from .errors import InputError
from .models import Spans, num_text_layers
from .layers import default_target_layers
from .saliency import SaliencyEngine


@dataclass
class TracedToken:
    """One generated token with its saliency summary."""

    position: int  # 0-based in the answer
    token_id: int
    logprob: float
    entropy: float
    summary: TokenSummary
    record: dict[str, Any] = field(default_factory=dict)
    row: np.ndarray | None = None  # (text columns,) float16 layer-mean Shat, when kept


@dataclass
class Trace:
    """A traced answer: its tokens, in order, and how the loop ended."""

    tokens: list[TracedToken]
    layers: list[int]
    target_layers: list[int]
    stopped_by_eos: bool

    @property
    def token_ids(self) -> list[int]:
        return [t.token_id for t in self.tokens]


def eos_ids(model: Any, extra: Iterable[int] = ()) -> set[int]:
    """End-of-sequence ids from the model's generation config, plus ``extra``."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config.get_text_config(), "eos_token_id", None)
    ids = set() if eos is None else ({int(eos)} if isinstance(eos, int) else {int(e) for e in eos})
    return ids | {int(e) for e in extra}


def text_columns(spans: Spans, query: int) -> np.ndarray:
    """Indices of the non-image columns of query row ``query``."""
    return np.concatenate([np.arange(*spans.system), np.arange(spans.image[1], query + 1)])


def trace_generate(
    model: Any,
    inputs: Mapping[str, Any],
    spans: Spans,
    decoder: Decoder | None = None,
    *,
    max_new_tokens: int = 64,
    layers: Sequence[int] | None = None,
    target_layers: Sequence[int] | None = None,
    eos_token_ids: Iterable[int] | None = None,
    generator: torch.Generator | None = None,
    keep_rows: bool = False,
    lookback: bool = False,
) -> Trace:
    """Decode an answer to ``inputs`` and summarise every generated token's saliency.

    Args:
        model: HF LVLM with eager attention.
        inputs: Prompt inputs (batch 1) from :meth:`~lvsal_data.models.LVLM.prepare`.
        spans: The prompt's spans.
        decoder: A :class:`~lvsal_data.decoding.Decoder` (default greedy).
        max_new_tokens: Upper bound on the answer length.
        layers: Layers to trace (default all).
        target_layers: Layers of the Eq. 6 score (default floor(6L/32)..floor(8L/32));
            must be among ``layers``.
        eos_token_ids: Ids that end the answer (default: the model's generation config).
        generator: Seeded generator for sampling decoders.
        keep_rows: Keep each token's layer-mean Shat row over the text columns (float16).
        lookback: Keep the per-head Lookback-Lens ratio.

    Returns:
        A :class:`Trace`.

    Example:
        >>> trace = trace_generate(lvlm.model, prepared.inputs, prepared.spans, max_new_tokens=32)  # doctest: +SKIP
        >>> [t.summary.saliency for t in trace.tokens]  # doctest: +SKIP
    """
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if spans.answer_start != inputs["input_ids"].shape[-1]:
        raise InputError("inputs must be the prompt only (spans.answer_start == sequence length)")
    n_layers = num_text_layers(model.config)
    layers = list(range(n_layers)) if layers is None else list(layers)
    target_layers = default_target_layers(n_layers) if target_layers is None else list(target_layers)
    missing = sorted(set(target_layers) - set(layers))
    if missing:
        raise InputError(f"target layers {missing} are not among the traced layers {layers}")
    target_idx = [layers.index(l) for l in target_layers]
    stop = eos_ids(model) if eos_token_ids is None else set(eos_token_ids)
    decoder = decoder or Greedy()
    decoder.reset(Context(spans=spans, target=target_idx, generator=generator))

    with decoder.attention(model, spans.answer_start):
        tokens, stopped = _decode(model, inputs, spans, decoder, layers, target_idx, stop, max_new_tokens,
                                  keep_rows, lookback)
    return Trace(tokens=tokens, layers=layers, target_layers=target_layers, stopped_by_eos=stopped)


def _decode(model: Any, inputs: Mapping[str, Any], spans: Spans, decoder: Decoder, layers: list[int],
            target_idx: list[int], stop: set[int], max_new_tokens: int, keep_rows: bool,
            lookback: bool) -> tuple[list[TracedToken], bool]:
    engine = SaliencyEngine(model, layers)
    step = engine.start(inputs)
    tokens: list[TracedToken] = []
    stopped = False
    for i in range(max_new_tokens):
        choice = decoder.choose(step)
        logp = torch.log_softmax(step.logits, dim=-1)
        entropy = float(-(logp.exp() * logp).sum())
        summary = summarize(choice.rows, step.attention, spans, step.position, target_idx, lookback)
        row = None
        if keep_rows:
            cols = text_columns(spans, step.position)
            row = choice.rows.mean(dim=0)[cols].cpu().numpy().astype(np.float16)
        tokens.append(TracedToken(i, choice.token, float(logp[choice.token]), entropy, summary, choice.record, row))
        if choice.token in stop:
            stopped = True
            break
        if i + 1 < max_new_tokens:
            step = engine.step(choice.token)
    return tokens, stopped


__all__ = ["Trace", "TracedToken", "eos_ids", "text_columns", "trace_generate"]
