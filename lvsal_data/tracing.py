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

from .aggregates import TokenSummary, summarize_batch
from .attention import attention_modules
from .config import DEFAULT_MAX_NEW_TOKENS
from .decoding.base import Context, Decoder, Greedy, StepView
from .errors import InputError
from .layers import default_target_layers
from .models import Spans
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
    hidden: np.ndarray | None = None  # (hidden layers, D) float16 projected residual stream, when kept
    p_hallucinated: float | None = None  # the run's detector's probability, when it has one


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


def default_layers(model: Any) -> tuple[list[int], list[int]]:
    """The layers traced by default (every layer with self-attention) and the default Eq. 6 target
    layers among them (:func:`~lvsal_data.layers.default_target_layers`)."""
    traced = sorted(attention_modules(model))
    return traced, default_target_layers(model.config.get_text_config().num_hidden_layers, traced)


def hidden_projection(hidden_size: int, dim: int, seed: int) -> torch.Tensor | None:
    """The fixed random projection of stored hidden states: ``(hidden_size, dim)`` float32 with
    N(0, 1/dim) entries drawn from ``seed`` on the CPU (the same matrix on every machine), or None
    (states stored whole) when ``dim`` is 0 or not below ``hidden_size``.

    Example:
        >>> hidden_projection(64, 16, seed=0).shape, hidden_projection(64, 64, seed=0)
        (torch.Size([64, 16]), None)
    """
    if dim < 0:
        raise InputError(f"--hidden-dim must be >= 0 (0: no projection), got {dim}")
    if dim == 0 or dim >= hidden_size:
        return None
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(hidden_size, dim, generator=generator) / dim**0.5


def trace_generate(
    model: Any,
    inputs: Mapping[str, Any],
    spans: Spans,
    decoder: Decoder | None = None,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    layers: Sequence[int] | None = None,
    target_layers: Sequence[int] | None = None,
    eos_token_ids: Iterable[int] | None = None,
    generator: torch.Generator | None = None,
    keep_rows: bool = False,
    lookback: bool = False,
    hidden_layers: Sequence[int] | None = None,
    hidden_projection: torch.Tensor | None = None,
) -> Trace:
    """Decode an answer to ``inputs`` and summarise every generated token's saliency.

    Args:
        model: HF LVLM with eager attention.
        inputs: Prompt inputs (batch 1) from :meth:`~lvsal_data.models.LVLM.prepare`.
        spans: The prompt's spans.
        decoder: A :class:`~lvsal_data.decoding.Decoder` (default greedy).
        max_new_tokens: Upper bound on the answer length.
        layers: Layers to trace (default: every layer with self-attention).
        target_layers: Layers of the Eq. 6 score (default floor(6L/32)..floor(8L/32), among
            the layers with self-attention); must be among ``layers``.
        eos_token_ids: Ids that end the answer (default: the model's generation config).
        generator: Seeded generator for sampling decoders.
        keep_rows: Keep each token's layer-mean Shat row over the text columns (float16).
        lookback: Keep the per-head Lookback-Lens ratio.
        hidden_layers: Decoder layers whose output at the query row each token keeps
            (:attr:`TracedToken.hidden`, float16), read in the same step.
        hidden_projection: ``(hidden_size, D)`` matrix the kept states are multiplied by
            (:func:`hidden_projection`; None: kept whole).

    Returns:
        A :class:`Trace`.

    Example:
        >>> trace = trace_generate(lvlm.model, prepared.inputs, prepared.spans, max_new_tokens=32)  # doctest: +SKIP
        >>> [t.summary.saliency for t in trace.tokens]  # doctest: +SKIP
    """
    return trace_batch(model, inputs, [spans], [decoder or Greedy()], max_new_tokens=max_new_tokens, layers=layers,
                       target_layers=target_layers, eos_token_ids=eos_token_ids, generators=[generator],
                       keep_rows=keep_rows, lookback=lookback, hidden_layers=hidden_layers,
                       hidden_projection=hidden_projection)[0]


def trace_batch(
    model: Any,
    inputs: Mapping[str, Any],
    spans: Sequence[Spans],
    decoders: Sequence[Decoder],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    layers: Sequence[int] | None = None,
    target_layers: Sequence[int] | None = None,
    eos_token_ids: Iterable[int] | None = None,
    generators: Sequence[torch.Generator | None] | None = None,
    keep_rows: bool = False,
    lookback: bool = False,
    hidden_layers: Sequence[int] | None = None,
    hidden_projection: torch.Tensor | None = None,
    tokenizer: Any = None,
) -> list[Trace]:
    """:func:`trace_generate` for a batch of left-padded prompts, traced together.

    Each sample has its own spans, decoder (its state: SGRS's history) and generator, so its
    trace equals its batch-1 trace whichever samples share the batch (the tests check it). A
    finished sample leaves the batch. Every step runs one forward and one backward for the
    whole batch (K candidates per sample for SGRS).

    Args:
        inputs: Prompt inputs of B samples, left-padded (``attention_mask``).
        spans: The B prompts' spans, in the padded coordinates of ``inputs``.
        decoders: One decoder per sample, of one class (they share the attention scope).
        generators: One generator per sample (None: unseeded).
        tokenizer: The model's tokenizer, for decoders that read the answer's text (guided).
        Others: as :func:`trace_generate`.
    """
    batch = inputs["input_ids"].shape[0]
    if not len(spans) == len(decoders) == batch:
        raise InputError(f"a batch of {batch} prompts needs {batch} spans and decoders, "
                         f"got {len(spans)} and {len(decoders)}")
    if len({type(d) for d in decoders}) > 1:
        raise InputError("the decoders of a batch must be of one class")
    if len({id(d) for d in decoders}) < len(decoders):
        raise InputError("each sample of a batch needs its own decoder instance (they keep per-sample state)")
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if any(s.answer_start != inputs["input_ids"].shape[-1] for s in spans):
        raise InputError("inputs must be the prompts only (spans.answer_start == sequence length)")
    traced, target = default_layers(model)
    layers = traced if layers is None else list(layers)
    target_layers = target if target_layers is None else list(target_layers)
    missing = sorted(set(target_layers) - set(layers))
    if missing:
        raise InputError(f"target layers {missing} are not among the traced layers {layers}")
    target_idx = [layers.index(l) for l in target_layers]
    stop = eos_ids(model) if eos_token_ids is None else set(eos_token_ids)
    generators = list(generators) if generators is not None else [None] * batch
    for decoder, s, g in zip(decoders, spans, generators):
        decoder.reset(Context(spans=s, target=target_idx, generator=g, tokenizer=tokenizer))
    with decoders[0].attention(model, spans[0].answer_start):
        tokens = _decode(model, inputs, spans, decoders, layers, target_idx, stop, max_new_tokens, keep_rows, lookback,
                         hidden_layers, hidden_projection)
    return [Trace(tokens=t, layers=layers, target_layers=target_layers,
                  stopped_by_eos=bool(t) and t[-1].token_id in stop)
            for t in tokens]


def _decode(model: Any, inputs: Mapping[str, Any], spans: Sequence[Spans], decoders: Sequence[Decoder],
            layers: list[int], target_idx: list[int], stop: set[int], max_new_tokens: int, keep_rows: bool,
            lookback: bool, hidden_layers: Sequence[int] | None,
            projection: torch.Tensor | None) -> list[list[TracedToken]]:
    engine = SaliencyEngine(model, layers, hidden_layers=hidden_layers)
    step = engine.start(inputs)
    tokens: list[list[TracedToken]] = [[] for _ in decoders]
    active = list(range(len(decoders)))  # sample index of each batch row
    for i in range(max_new_tokens):
        candidates = [decoders[b].propose(step.logits[r]) for r, b in enumerate(active)]
        rows = step.saliency(torch.stack(candidates).to(step.logits.device))  # (rows, K, layers, q + 1)
        logp = torch.log_softmax(step.logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(dim=-1)
        hidden = None
        if step.hidden is not None:
            states = step.hidden if projection is None else step.hidden @ projection.to(step.hidden.device)
            hidden = states.cpu().numpy().astype(np.float16)  # (rows, hidden layers, D)
        choices = []
        for r, b in enumerate(active):
            decoders[b].observe(StepView(step.position, step.attention[r], logp[r], float(entropy[r]),
                                         None if hidden is None else hidden[r]))
            choices.append(decoders[b].decide(candidates[r], step.logits[r], rows[r]))
        summaries = summarize_batch(torch.stack([c.rows for c in choices]), step.attention, [spans[b] for b in active],
                                    step.position, target_idx, lookback)
        emitted = []
        for r, (b, choice, summary) in enumerate(zip(active, choices, summaries)):
            row = None
            if keep_rows:
                row = choice.rows.mean(dim=0)[text_columns(spans[b], step.position)].cpu().numpy().astype(np.float16)
            tokens[b].append(TracedToken(i, choice.token, float(logp[r, choice.token]), float(entropy[r]), summary,
                                         choice.record, row, None if hidden is None else hidden[r]))
            emitted.append(choice.token)
        keep = [r for r, token in enumerate(emitted) if token not in stop]
        if not keep or i + 1 == max_new_tokens:
            break
        if len(keep) < len(active):  # finished samples leave the batch
            engine.drop(keep)
            active = [active[r] for r in keep]
            emitted = [emitted[r] for r in keep]
        step = engine.step(emitted)
    return tokens


__all__ = ["Trace", "TracedToken", "default_layers", "eos_ids", "hidden_projection", "text_columns", "trace_batch",
           "trace_generate"]
