"""Gradient-aware saliency (paper Eqs. 2-6), computed exactly and incrementally, for a batch.

For a generated token y at absolute position p, its logits come from query row q = p - 1.
For layer l and head h, with A = the post-softmax attention row A^{l,h}[q, 0..q] and
loss = -log softmax(logits[q])[y]::

    G       = dLoss / dA^{l,h}[q, 0..q]
    S^{l,h} = |A (.) G|
    S^l     = mean_h S^{l,h} ;  Shat^l = S^l / ||S^l||_2

Why one step is exact: A^{l}[q, :] influences the loss only through position q's residual
stream in layers >= l (causality), which is exactly the graph of a one-token step whose past
keys / values are detached. So the engine prefills the prompt without gradients and then runs
one token per step with gradients on, reading the step's own attention row. A prompt the model
reads bidirectionally (PaliGemma's prefix) is run whole with gradients instead: there, later
layers of every prompt position depend on the last one. The tests check every supported family
against brute-force full-sequence autograd.

The engine drives the model with its own generation hooks (``prepare_inputs_for_generation``,
``_update_model_kwargs_for_generation``), as ``generate()`` does: positions (M-RoPE, PaliGemma's
1-based ones), masks, token types, Llama 3.2 Vision's cross-attention mask and the dropping of
image inputs after the prefill come out exactly as there. The attention rows are read by forward
hooks on the traced layers' self-attention modules (hybrid models' linear-attention layers and
cross-attention layers have none), and a sliding-window layer's row is placed at its absolute
columns (the keys outside the window have zero attention, hence zero saliency).

A batch of B left-padded prompts runs together: the mask travels with every step, each sample
keeps its own positions, finished samples leave the batch (cache rows included), and one
backward of the summed losses gives every sample its own rows, since a sample's loss depends only
on its own attention. The K candidates of an SGRS step share that step's forward graph and
differ only in their loss, so all K x B rows come from one batched backward
(``is_grads_batched``). The backward never touches the cached past: the step runs
:mod:`lvsal_data.attention`'s eager attention, which differentiates through the new token's key
and value only (bitwise the same forward).
"""

from __future__ import annotations

import inspect
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from . import attention, kvcache
from .errors import InputError, UnsupportedModelError
from .models import check_eager

#: Inputs with one entry per token along dimension 1 (``(batch, seq, ...)``): the prefill takes
#: their prompt part and finished samples leave them. Every other input (pixel values, image
#: grids, ...) is per image and is consumed by the prefill.
PER_TOKEN_INPUTS = ("attention_mask", "token_type_ids", "mm_token_type_ids", "moe_mm_token_type_ids",
                    "cross_attention_mask")


def normalized_saliency(attn: Tensor, grad: Tensor) -> Tensor:
    """Shat = normalise(mean_h |A (.) G|) along the key axis (paper Eqs. 3-5, row norm).

    Args:
        attn: ``(heads, keys)`` post-softmax attention row of one layer (any leading batch dims
            matching ``grad``'s trailing ones).
        grad: ``(..., heads, keys)`` dLoss/dA for one or more losses.

    Returns:
        ``(..., keys)`` float32 rows with unit L2 norm (all-zero rows stay zero).
    """
    sal = (attn.float() * grad.float()).abs().mean(dim=-2)  # (..., keys)
    norm = sal.norm(dim=-1, keepdim=True)
    return sal / norm.clamp_min(torch.finfo(torch.float32).tiny)


def left_padding(mask: Tensor) -> Tensor:
    """``(batch,)`` number of leading zeros of each row of a 2-D attention mask.

    Raises:
        InputError: A row has a zero after a one (right or inner padding): generation, and so
            tracing, appends new tokens on the right and needs padding on the left.
    """
    ones = mask.ne(0)
    pad = (~ones).long().cumprod(dim=-1).sum(dim=-1)
    if bool((ones.sum(dim=-1) + pad != mask.shape[-1]).any()):
        raise InputError("the attention mask must be left-padded (zeros, then ones); pad prompts on the left "
                         "(tokenizer.padding_side = 'left')")
    return pad


@dataclass
class Step:
    """One decoding step of a batch, gradients on: each row's query at ``position`` predicts its
    next token.

    Attributes:
        position: Absolute position q of the query row (left padding aligns every sample's).
        logits: ``(batch, vocab)`` float32 next-token logits, detached.
        attention: ``(batch, layers, heads, q + 1)`` float32 attention rows of the traced layers,
            detached, at their absolute columns.
        hidden: ``(batch, hidden layers, hidden size)`` float32 residual stream at the query row,
            the output of each of the engine's ``hidden_layers`` (None when it has none), detached.
    """

    position: int
    logits: Tensor
    attention: Tensor
    _graph_logits: Tensor = field(repr=False)  # (batch, vocab)
    _graph_attn: list[Tensor] = field(repr=False)  # per layer (batch, heads, queries, keys of the layer), in the graph
    _used: bool = field(default=False, repr=False)
    hidden: Tensor | None = None

    def saliency(self, targets: Tensor | Sequence[int] | Sequence[Sequence[int]] | int) -> Tensor:
        """Saliency rows of K target tokens per sample, from one (batched) backward.

        Args:
            targets: ``(batch, K)`` token ids whose NLL is each loss; with a batch of one, a
                flat list of K ids (or one id) also works.

        Returns:
            ``(batch, K, layers, q + 1)`` float32 normalised rows Shat (paper Eq. 5); with a batch
            of one and flat targets, ``(K, layers, q + 1)``.

        Raises:
            RuntimeError: Called twice on the same step (the graph is freed after one backward),
                or after the engine's next step, which wrote into the cache this step's graph
                reads (autograd refuses the stale backward; call it before stepping on).
        """
        if self._used:
            raise RuntimeError("Step.saliency was already called; pass all targets in one call")
        self._used = True
        batch = self._graph_logits.shape[0]
        targets = torch.as_tensor(targets, device=self._graph_logits.device)
        flat = targets.dim() < 2
        targets = targets.reshape(batch, -1) if not flat or batch == 1 else None
        if targets is None:
            raise InputError(f"a batch of {batch} needs (batch, K) targets")
        logp = torch.log_softmax(self._graph_logits.float(), dim=-1)  # (batch, vocab)
        losses = -logp.gather(1, targets).sum(dim=0)  # (K,): sample b's loss depends on sample b's graph only
        if losses.numel() == 1:
            grads = [g.unsqueeze(0) for g in torch.autograd.grad(losses[0], self._graph_attn)]
        else:
            eye = torch.eye(losses.numel(), device=losses.device, dtype=losses.dtype)
            grads = torch.autograd.grad(losses, self._graph_attn, grad_outputs=eye, is_grads_batched=True)
        q = self.position
        # filled on the model's device and copied to the host once: a copy per layer would make
        # a GPU step wait for the device once per traced layer
        rows = torch.zeros(batch, targets.shape[1], len(grads), q + 1, device=self._graph_logits.device)
        for k, (att, g) in enumerate(zip(self._graph_attn, grads)):  # g: (K, batch, heads, queries, keys)
            width = att.shape[-1]
            shat = normalized_saliency(att[:, :, -1].detach(), g[:, :, :, -1])  # (K, batch, width)
            rows[..., k, q + 1 - width:] = shat.transpose(0, 1)
        self._graph_attn = []  # free the graph
        rows = rows.cpu()
        return rows[0] if flat else rows


def returned_cache(out: Any) -> Any:
    """The KV cache a forward returned, under its 5.24+ name ``cache`` or its older one."""
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


def _cache_layers(cache: Any) -> list[Any]:
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise UnsupportedModelError(f"unsupported KV cache type {type(cache).__name__}; expected a transformers Cache")
    return layers


def _detach_cache(cache: Any) -> None:
    """Cut the autograd history of a cache in place (the past is a constant): key / value rows,
    and the convolution and recurrent states of linear-attention layers (replaced, not copied
    into, so a tensor the last step's graph saved is never modified)."""
    for layer in _cache_layers(cache):
        for name in ("keys", "values"):
            value = getattr(layer, name, None)
            if torch.is_tensor(value) and value.requires_grad:
                setattr(layer, name, value.detach())
        for name in ("conv_states", "recurrent_states"):
            states = getattr(layer, name, None)
            if isinstance(states, dict):
                for i, t in states.items():
                    if torch.is_tensor(t) and t.requires_grad:
                        states[i] = t.detach().clone()


def _prepare_cache(cache: Any, handed: list[Tensor], fast: bool) -> bool:
    """Prepare a cache for gradient steps; returns whether the fast path applies.

    - Linear-attention layers store their new recurrent state by assignment instead of
      copying it into the old one, which the step's graph has saved (an in-place change to it
      breaks the backward).
    - Full and sliding-window attention layers (fast path) store detached keys / values, in
      spare room of a buffer that grows in chunks rather than by copying the whole cache each
      step (:mod:`lvsal_data.kvcache`), and hand the attention function views that carry the
      step's live new rows (see :mod:`lvsal_data.attention`); the views handed out are appended
      to ``handed``.
    """
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    layers = _cache_layers(cache)
    for layer in layers:
        if hasattr(layer, "update_recurrent_state") and not getattr(layer, "_lvsal_patched", False):
            original = layer.update_recurrent_state

            def update_recurrent_state(states: Tensor, state_idx: int = 0, *args: Any, _layer: Any = layer,
                                       _original: Any = original, **kwargs: Any) -> Tensor:
                if not _layer.is_recurrent_states_initialized[state_idx]:
                    return _original(states.detach(), state_idx, *args, **kwargs)
                _layer.recurrent_states[state_idx] = states.detach()
                return _layer.recurrent_states[state_idx]

            layer.update_recurrent_state = update_recurrent_state
            layer._lvsal_patched = True
    attention_layers = [l for l in layers if isinstance(l, DynamicLayer)]
    if not fast or any(type(l) not in (DynamicLayer, DynamicSlidingWindowLayer) for l in attention_layers):
        return False
    for layer in attention_layers:
        if getattr(layer, "_lvsal_live", False):
            continue

        def update(key_states: Tensor, value_states: Tensor, *args: Any, _layer: Any = layer,
                   _update: Any = type(layer).update, **kwargs: Any) -> tuple[Tensor, Tensor]:
            if kvcache.supports(_layer):  # the new rows go into spare room: the past is not copied
                keys, values = kvcache.append(_layer, key_states.detach(), value_states.detach())
            else:
                keys, values = _update(_layer, key_states.detach(), value_states.detach(), *args, **kwargs)
            if not (key_states.requires_grad or value_states.requires_grad):
                return keys, values
            views = attention.mark_live(keys, key_states), attention.mark_live(values, value_states)
            handed.extend(views)
            return views

        layer.update = update
        layer._lvsal_live = True
    return True


def _index(tensor: Tensor, key: str, rows: Tensor) -> Tensor:
    """Keep ``rows`` of a per-sample tensor (position ids of M-RoPE carry the batch second)."""
    return tensor[:, rows] if key == "position_ids" and tensor.dim() == 3 else tensor[rows]


class SaliencyEngine:
    """Incremental saliency for a batch of prompts: prefill once, then one token per step.

    Args:
        model: An HF LVLM loaded with eager attention.
        layers: Layer indices to trace (default: every layer with self-attention).
        fast: Differentiate through the new token's key / value only (default). False lets
            autograd run through the whole cached past as plain eager attention does (the
            reference path; both give the same rows).
        prefix_lm: The prompt is read bidirectionally (default: the model's family says).
        hidden_layers: Decoder layers whose output (the residual stream) at the query row each
            step also returns (:attr:`Step.hidden`), read by forward hooks in the same forward.

    Example:
        >>> engine = SaliencyEngine(model)  # doctest: +SKIP
        >>> step = engine.start(prepared.inputs)  # doctest: +SKIP
        >>> token = int(step.logits[0].argmax()); row = step.saliency([token])[0]  # doctest: +SKIP
        >>> step = engine.step([token])  # doctest: +SKIP
    """

    def __init__(self, model: Any, layers: Sequence[int] | None = None, fast: bool = True,
                 prefix_lm: bool | None = None, hidden_layers: Sequence[int] | None = None) -> None:
        check_eager(model)
        self.model = model
        self.fast = fast
        modules = attention.attention_modules(model)
        self.layers = sorted(modules) if layers is None else [int(l) for l in layers]
        bad = [l for l in self.layers if l not in modules]
        if bad or not self.layers:
            raise InputError(f"layers {bad or self.layers} out of range: this model traces layers "
                             f"{_ranges(sorted(modules))} (those with self-attention)")
        self._modules = [modules[l] for l in self.layers]
        decoder_layers = attention.decoder_layers(model)
        self.hidden_layers = [int(l) for l in hidden_layers or ()]
        bad = [l for l in self.hidden_layers if not 0 <= l < len(decoder_layers)]
        if bad:
            raise InputError(f"hidden-state layers {bad} out of range: this model has {len(decoder_layers)} decoder "
                             f"layers (0..{len(decoder_layers) - 1})")
        self._hidden_modules = [decoder_layers[l] for l in self.hidden_layers]
        if prefix_lm is None:
            from .families import FAMILIES

            family = FAMILIES[model.config.model_type] if model.config.model_type in FAMILIES else None
            prefix_lm = bool(getattr(family, "prefix_lm", False))
        self.prefix_lm = prefix_lm
        self._handed: list[Tensor] = []  # live views the cache handed out during the current step's forward
        self._live_used = True  # whether the last step's attention took every one of them
        self._ids: Tensor | None = None  # (batch, tokens so far)
        self._kwargs: dict[str, Any] = {}  # generate()'s model_kwargs: cache, mask, positions, ...
        self._position = -1

    @property
    def position(self) -> int:
        """Absolute position of the last token fed (the current query row)."""
        return self._position

    @property
    def batch_size(self) -> int:
        return 0 if self._ids is None else int(self._ids.shape[0])

    # -- the model, driven as generate() drives it ---------------------------------------------
    @contextmanager
    def _grad_forward(self) -> Iterator[tuple[list[Tensor], list[Tensor]]]:
        """Gradients on, the embedding output a leaf that requires grad (the weights do not),
        and hooks that collect each traced layer's attention weights and each hidden-state
        layer's output at the last position."""
        captured: list[Tensor | None] = [None] * len(self._modules)
        hidden: list[Tensor | None] = [None] * len(self._hidden_modules)

        def capture(k: int) -> Any:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                captured[k] = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            return hook

        def capture_hidden(k: int) -> Any:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                states = output[0] if isinstance(output, tuple) else output
                hidden[k] = states[:, -1].detach().float()
            return hook

        embeddings = self.model.get_input_embeddings()
        with ExitStack() as stack:
            handles = [m.register_forward_hook(capture(k)) for k, m in enumerate(self._modules)]
            handles += [m.register_forward_hook(capture_hidden(k)) for k, m in enumerate(self._hidden_modules)]
            handles.append(embeddings.register_forward_hook(lambda m, a, out: out.detach().requires_grad_(True)))
            stack.callback(lambda: [h.remove() for h in handles])
            stack.enter_context(torch.enable_grad())
            stack.enter_context(attention.scope(self.model) if self.fast else nullcontext())
            yield captured, hidden  # type: ignore[misc]

    def _forward(self, ids: Tensor, length: int | None, first: bool) -> Any:
        """One forward of the last ``length`` tokens of ``ids`` (None: all), cache updated."""
        inputs = self.model.prepare_inputs_for_generation(ids, next_sequence_length=length, is_first_iteration=first,
                                                          **self._kwargs)
        out = self.model(**inputs, return_dict=True)
        self._kwargs["cache"] = returned_cache(out)
        return out

    def _prompt_kwargs(self, inputs: Mapping[str, Any], ids: Tensor, mask: Tensor) -> dict[str, Any]:
        """generate()'s model_kwargs for the prompt ``ids``: the inputs, the mask and the position
        ids the model's own ``_prepare_position_ids_for_generation`` gives."""
        n = ids.shape[1]
        kwargs = {k: (v[:, :n] if k in PER_TOKEN_INPUTS and torch.is_tensor(v) else v)
                  for k, v in inputs.items() if k not in ("input_ids", "position_ids", "attention_mask")}
        kwargs["attention_mask"] = mask
        kwargs["use_cache"] = True
        if "position_ids" in inspect.signature(self.model.forward).parameters:
            given = inputs.get("position_ids")
            kwargs["position_ids"] = (given[..., :n] if given is not None
                                      else self.model._prepare_position_ids_for_generation(ids, kwargs))
        return kwargs

    def start(self, inputs: Mapping[str, Any], context_len: int | None = None) -> Step:
        """Prefill ``inputs[:, :context_len]`` and return the step whose logits predict the token at
        ``context_len``, its last context token run with gradients on.

        Args:
            inputs: Model inputs of a batch of prompts (optionally followed by more tokens),
                left-padded by their attention mask.
            context_len: How many leading tokens are context (default: all of ``input_ids``).

        Returns:
            The :class:`Step` of the last context token.
        """
        ids = inputs["input_ids"]
        if ids.dim() != 2:
            raise InputError(f"expected input_ids of shape (batch, seq), got {tuple(ids.shape)}")
        context_len = ids.shape[1] if context_len is None else int(context_len)
        mask = inputs.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask.to(ids.device).long()
        if mask.shape != ids.shape:
            raise InputError(f"attention_mask of shape {tuple(mask.shape)} does not match input_ids {tuple(ids.shape)}")
        pad = int(left_padding(mask).max())
        if not pad + 2 <= context_len <= ids.shape[1]:
            raise InputError(f"context_len={context_len} must be in [{pad + 2}, {ids.shape[1]}] "
                             f"(the prompt holds up to {pad} padding tokens)")
        ids = ids[:, :context_len]
        for attempt in range(2):
            self._ids = ids
            self._kwargs = self._prompt_kwargs(inputs, ids, mask[:, :context_len])
            cut = 0 if self.prefix_lm else context_len - 1
            if cut:
                with torch.no_grad():
                    prefix = {k: (v[..., :cut] if k == "position_ids" else v[:, :cut] if k in PER_TOKEN_INPUTS else v)
                              for k, v in self._kwargs.items()}
                    if self.model._supports_logits_to_keep():  # only the cache is kept: no (batch, cut, vocab) logits
                        prefix["logits_to_keep"] = 1
                    saved, self._kwargs = self._kwargs, prefix
                    self._forward(ids[:, :cut], None, first=True)
                    saved["cache"] = self._kwargs["cache"]
                    self._kwargs = saved
            if cut:  # a prefix-LM prompt has no cache before its chunk, which runs on the plain path
                self.fast = _prepare_cache(self._kwargs["cache"], self._handed, self.fast)
            step = self._step(ids, context_len - cut, first=not cut)
            if not self.fast or self._live_used:
                return step
            # the model's attention did not take the live rows (its own code between the cache and
            # the attention function): redo the step on the plain path, which needs nothing of it
            self.fast = False
        return step

    def step(self, tokens: Sequence[int] | Tensor) -> Step:
        """Feed one token per sample at the next position with gradients on; the past stays constant."""
        if self._ids is None:
            raise RuntimeError("call start() before step()")
        tokens = torch.as_tensor(tokens, device=self._ids.device).reshape(-1, 1)
        if tokens.shape[0] != self._ids.shape[0]:
            raise InputError(f"{tokens.shape[0]} tokens for a batch of {self._ids.shape[0]}")
        # as generate() calls it (Llama 3.2 Vision's override takes is_encoder_decoder without a default)
        self._kwargs = self.model._update_model_kwargs_for_generation(
            self._last, self._kwargs, is_encoder_decoder=bool(self.model.config.is_encoder_decoder))
        self._ids = torch.cat([self._ids, tokens], dim=1)
        return self._step(self._ids, 1, first=False)

    def _step(self, ids: Tensor, length: int, first: bool) -> Step:
        try:
            with self._grad_forward() as (captured, hidden):
                out = self._forward(ids, length, first)
            self._live_used = all(attention.was_used(v) for v in self._handed)
        finally:
            self._handed.clear()  # keep no reference to this step's graph past the forward
        if any(a is None for a in captured):
            raise UnsupportedModelError(f"{type(self.model).__name__} returned no attention weights from its "
                                        "self-attention layers; it must run eager attention")
        cache = self._kwargs["cache"]
        _detach_cache(cache)
        self.fast = _prepare_cache(cache, self._handed, self.fast)
        # what _update_model_kwargs_for_generation reads: the output without its graph-holding tensors
        self._last = {k: v for k, v in out.items() if k not in ("logits", "attentions", "hidden_states")}
        self._position = int(ids.shape[1]) - 1
        wide = max(a.shape[-1] for a in captured)  # each (batch, heads, queries, keys of the layer)
        if wide != self._position + 1:
            raise UnsupportedModelError(f"attention rows cover {wide} keys, expected {self._position + 1}: "
                                        "a compressed cache cannot be traced")
        logits = out.logits[:, -1]
        return Step(position=self._position, logits=logits.detach().float(),
                    attention=torch.stack([_absolute(a[:, :, -1].detach().float(), wide) for a in captured], dim=1),
                    _graph_logits=logits, _graph_attn=list(captured),
                    hidden=torch.stack(hidden, dim=1) if hidden else None)

    def drop(self, keep: Sequence[int]) -> None:
        """Keep only the samples at indices ``keep`` of the current batch (finished ones leave):
        their cache rows, mask, positions and other per-token inputs."""
        if self._ids is None:
            raise RuntimeError("call start() before drop()")
        from transformers.generation.utils import MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL

        rows = torch.as_tensor(list(keep), dtype=torch.long, device=self._ids.device)
        batch = self._ids.shape[0]
        self._ids = self._ids[rows]
        for key, value in list(self._kwargs.items()):
            if key == "cache":
                value.reorder_cache(rows)
            elif key in MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL:
                del self._kwargs[key]  # consumed by the prefill
            elif key == "position_ids" or (key in PER_TOKEN_INPUTS and torch.is_tensor(value)):
                self._kwargs[key] = _index(value, key, rows)
            elif torch.is_tensor(value) and value.shape[:1] == (batch,):
                self._kwargs[key] = value[rows]


def _absolute(row: Tensor, width: int) -> Tensor:
    """``(batch, heads, k)`` row of a sliding-window layer placed at its absolute columns."""
    return row if row.shape[-1] == width else nn.functional.pad(row, (width - row.shape[-1], 0))


def _ranges(layers: Sequence[int]) -> str:
    return ", ".join(map(str, layers)) if len(layers) < 12 else f"{layers[0]}..{layers[-1]} ({len(layers)} layers)"


def saliency_rows(
    model: Any, inputs: Mapping[str, Any], answer_start: int, layers: Sequence[int] | None = None
) -> Tensor:
    """Teacher-forced saliency rows of every answer token (paper Eqs. 2-5).

    Args:
        model: An HF LVLM loaded with eager attention (see :func:`~lvsal_data.load_lvlm`).
        inputs: Model inputs of prompt + answer, batch 1.
        answer_start: Index of the first answer token in ``input_ids``.
        layers: Layer indices (default: every layer with self-attention).

    Returns:
        ``(n_answer_tokens, n_layers, seq_len)`` float32: for answer token i at position
        p = answer_start + i, the head-mean, row-L2-normalised ``|A (.) dLoss/dA|`` of query row
        p - 1; zeros right of the causal limit (columns > p - 1).

    Example:
        >>> rows = saliency_rows(lvlm.model, inputs, answer_start=prepared.spans.answer_start)  # doctest: +SKIP
        >>> rows.shape  # (answer tokens, layers, sequence)  # doctest: +SKIP
    """
    ids = inputs["input_ids"]
    seq = ids.shape[-1]
    if ids.shape[0] != 1:
        raise InputError(f"saliency_rows takes a batch of one, got {ids.shape[0]}")
    if not 2 <= answer_start < seq:
        raise InputError(f"answer_start={answer_start} must be in [2, {seq - 1}] for a sequence of {seq}")
    engine = SaliencyEngine(model, layers)
    out = torch.zeros(seq - answer_start, len(engine.layers), seq)
    step = engine.start(inputs, answer_start)
    for i, pos in enumerate(range(answer_start, seq)):
        token = int(ids[0, pos])
        out[i, :, :pos] = step.saliency([token])[0]
        if pos + 1 < seq:
            step = engine.step([token])
    return out


__all__ = ["PER_TOKEN_INPUTS", "SaliencyEngine", "Step", "left_padding", "normalized_saliency", "saliency_rows"]
