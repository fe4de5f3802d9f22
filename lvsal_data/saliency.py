"""Gradient-aware saliency (paper Eqs. 2-6), computed exactly and incrementally.

For a generated token y at absolute position p, its logits come from query row q = p - 1.
For layer l and head h, with A = the post-softmax attention row A^{l,h}[q, 0..q] and
loss = -log softmax(logits[q])[y]::

    G       = dLoss / dA^{l,h}[q, 0..q]
    S^{l,h} = |A (.) G|
    S^l     = mean_h S^{l,h} ;  Shat^l = S^l / ||S^l||_2

Why one step is exact: A^{l}[q, :] influences the loss only through position q's residual
stream in layers >= l (causality), which is exactly the graph of a one-token step whose past
keys / values are detached. So the engine prefills the prompt without gradients and then runs
one token per step with gradients on, reading the step's own attention row. The tests check
this against brute-force full-sequence autograd on LLaVA (MHA and GQA), Qwen2-VL (M-RoPE) and
InternVL.

The K candidates of an SGRS step share that step's forward graph and differ only in their
loss, so their K rows come from one batched backward (``is_grads_batched``). The backward never
touches the cached past: the step runs :mod:`lvsal_data.attention`'s eager attention, which
differentiates through the new token's key and value only (bitwise the same forward; the tests
check the rows against the plain path and brute force).
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from . import attention
from .errors import InputError, UnsupportedModelError
from .layers import default_target_layers
from .models import check_eager, num_text_layers


def normalized_saliency(attn: Tensor, grad: Tensor) -> Tensor:
    """Shat = normalise(mean_h |A (.) G|) along the key axis (paper Eqs. 3-5, row norm).

    Args:
        attn: ``(heads, keys)`` post-softmax attention row of one layer.
        grad: ``(..., heads, keys)`` dLoss/dA for one or more losses.

    Returns:
        ``(..., keys)`` float32 rows with unit L2 norm (all-zero rows stay zero).
    """
    sal = (attn.float() * grad.float()).abs().mean(dim=-2)  # (..., keys)
    norm = sal.norm(dim=-1, keepdim=True)
    return sal / norm.clamp_min(torch.finfo(torch.float32).tiny)


def _detach_cache(cache: Any) -> None:
    """Cut the autograd history of a KV cache in place (the past is a constant)."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise UnsupportedModelError(f"unsupported KV cache type {type(cache).__name__}; expected a transformers Cache")
    for layer in layers:
        for name in ("keys", "values"):
            value = getattr(layer, name, None)
            if torch.is_tensor(value) and value.requires_grad:
                setattr(layer, name, value.detach())


@dataclass
class Step:
    """One decoding step with gradients on: the query at ``position`` predicts the next token.

    Attributes:
        position: Absolute position q of the query row (the token fed at this step).
        logits: ``(vocab,)`` float32 next-token logits, detached.
        attention: ``(layers, heads, q + 1)`` float32 attention rows of the selected layers, detached.
    """

    position: int
    logits: Tensor
    attention: Tensor
    _graph_logits: Tensor = field(repr=False)
    _graph_attn: list[Tensor] = field(repr=False)
    _used: bool = field(default=False, repr=False)

    def saliency(self, targets: Tensor | Sequence[int] | int) -> Tensor:
        """Saliency rows of one or more target tokens, from one (batched) backward.

        Args:
            targets: Token id(s) whose NLL is the loss; K ids give K rows.

        Returns:
            ``(K, layers, q + 1)`` float32 normalised rows Shat (paper Eq. 5).

        Raises:
            RuntimeError: Called twice on the same step (the graph is freed after one backward).
        """
        if self._used:
            raise RuntimeError("Step.saliency was already called; pass all targets in one call")
        self._used = True
        targets = torch.as_tensor(targets, device=self._graph_logits.device).reshape(-1)
        logp = torch.log_softmax(self._graph_logits.float(), dim=-1)
        losses = -logp[targets]  # (K,)
        if losses.numel() == 1:
            grads = torch.autograd.grad(losses[0], self._graph_attn)
            grads = [g.unsqueeze(0) for g in grads]
        else:
            eye = torch.eye(losses.numel(), device=losses.device, dtype=losses.dtype)
            grads = torch.autograd.grad(losses, self._graph_attn, grad_outputs=eye, is_grads_batched=True)
        rows = [
            normalized_saliency(att[0, :, 0, :].detach(), g[:, 0, :, 0, :])  # (K, q + 1)
            for att, g in zip(self._graph_attn, grads)
        ]
        self._graph_attn = []  # free the graph
        return torch.stack(rows, dim=1)


def cache_keyword(model: Any) -> str:
    """The keyword under which ``model``'s forward takes the KV cache: ``cache`` from transformers
    5.24 on (``past_key_values`` still works there but is deprecated), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out: Any) -> Any:
    """The KV cache a forward returned, under its 5.24+ name ``cache`` or its older one."""
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


def _live_cache(cache: Any, handed: list[Tensor]) -> bool:
    """Make each layer of a dynamic KV cache store detached keys / values and hand the attention
    function views that carry the step's live new rows (see :mod:`lvsal_data.attention`); the
    views handed out are appended to ``handed``. False (cache untouched) for other cache types."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return False
    for layer in layers:
        def update(key_states: Tensor, value_states: Tensor, *args: Any, _layer: Any = layer, **kwargs: Any):
            keys, values = DynamicLayer.update(_layer, key_states.detach(), value_states.detach(), *args, **kwargs)
            if not (key_states.requires_grad or value_states.requires_grad):
                return keys, values
            views = attention.mark_live(keys, key_states), attention.mark_live(values, value_states)
            handed.extend(views)
            return views
        layer.update = update
    return True


#: Inputs with one entry per token, ``(batch, seq)``: the prefill takes their prompt part. Every
#: other input (pixel values, image grids, ...) is per image and passes whole, whatever its shape.
PER_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "moe_mm_token_type_ids")


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


class SaliencyEngine:
    """Incremental saliency for one sequence: prefill once, then one token per step.

    The attention mask and the position ids travel with every step exactly as ``generate()``
    carries them (the positions come from the model's own ``_prepare_position_ids_for_generation``,
    so left padding and multimodal RoPE give generate()'s positions), so a left-padded prompt
    traces to the same rows as the unpadded one.

    Args:
        model: An HF LVLM loaded with eager attention.
        layers: Layer indices to trace (default: all).
        fast: Differentiate through the new token's key / value only (default). False lets
            autograd run through the whole cached past as plain eager attention does (the
            reference path; both give the same rows).

    Example:
        >>> engine = SaliencyEngine(model)  # doctest: +SKIP
        >>> step = engine.start(prepared.inputs)  # the prompt's last token predicts the answer
        >>> token = int(step.logits.argmax()); row = step.saliency([token])[0]
        >>> step = engine.step(token)
    """

    def __init__(self, model: Any, layers: Sequence[int] | None = None, fast: bool = True) -> None:
        check_eager(model)
        self.model = model
        self.fast = fast
        self._handed: list[Tensor] = []  # live views the cache handed out during the current step's forward
        self._live_used = True  # whether the last step's attention took every one of them
        n = num_text_layers(model.config)
        self.layers = list(range(n)) if layers is None else [int(l) for l in layers]
        bad = [l for l in self.layers if not 0 <= l < n]
        if bad or not self.layers:
            raise InputError(f"layers {bad or self.layers} out of range for a model with {n} layers")
        self._cache: Any = None
        self._cache_kw = cache_keyword(model)
        self._takes_positions = "position_ids" in inspect.signature(model.forward).parameters
        self._mask: Tensor | None = None  # (batch, keys so far) attention mask
        self._positions: Tensor | None = None  # (..., batch, n) position ids of the tokens fed so far (n >= 1)
        self._next_positions: Tensor | None = None  # the next step's position ids, when the prompt fixes them
        self._position = -1

    @property
    def position(self) -> int:
        """Absolute position of the last token fed (the current query row)."""
        return self._position

    def _prompt_positions(self, inputs: Mapping[str, Any], mask: Tensor) -> Tensor | None:
        """generate()'s position ids of the whole prompt (None: the model takes none)."""
        if not self._takes_positions:
            return None
        if inputs.get("position_ids") is not None:
            return inputs["position_ids"]
        kwargs = {k: v for k, v in inputs.items() if k != "input_ids"}
        kwargs["attention_mask"] = mask
        return self.model._prepare_position_ids_for_generation(inputs["input_ids"], kwargs)

    @torch.no_grad()
    def _prefill(self, inputs: Mapping[str, Any], length: int) -> None:
        prefix = {k: (v[:, :length] if k in PER_TOKEN_INPUTS and torch.is_tensor(v) else v)
                  for k, v in inputs.items() if k != "position_ids"}
        prefix["attention_mask"] = self._mask[:, :length]
        if self._positions is not None:
            prefix["position_ids"] = self._positions[..., :length]
        out = self.model(**prefix, use_cache=True)
        self._cache = returned_cache(out)
        self._position = length - 1
        if self.fast and not _live_cache(self._cache, self._handed):
            self.fast = False  # another cache type: the plain path

    def start(self, inputs: Mapping[str, Any], context_len: int | None = None) -> Step:
        """Prefill ``inputs[:context_len - 1]`` and step its last token with gradients on.

        Args:
            inputs: Model inputs of batch 1 (prompt, optionally followed by more tokens); an
                attention mask, if given, may pad the prompt on the left.
            context_len: How many leading tokens are context (default: all of ``input_ids``).

        Returns:
            The :class:`Step` whose logits predict the token at ``context_len``.
        """
        ids = inputs["input_ids"]
        if ids.dim() != 2 or ids.shape[0] != 1:
            raise InputError(f"expected input_ids of shape (1, seq), got {tuple(ids.shape)}")
        context_len = ids.shape[1] if context_len is None else int(context_len)
        mask = inputs.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask.to(ids.device).long()
        if mask.shape != ids.shape:
            raise InputError(f"attention_mask of shape {tuple(mask.shape)} does not match input_ids {tuple(ids.shape)}")
        pad = int(left_padding(mask)[0])
        if not pad + 2 <= context_len <= ids.shape[1]:
            raise InputError(f"context_len={context_len} must be in [{pad + 2}, {ids.shape[1]}] "
                             f"(the prompt holds {pad} padding tokens)")
        positions = self._prompt_positions(inputs, mask)
        for attempt in range(2):
            self._mask, self._positions = mask[:, :context_len], positions
            self._prefill(inputs, context_len - 1)
            if positions is not None:  # the last context token's position is the prompt's, not "last plus one"
                self._next_positions = positions[..., context_len - 1 : context_len]
            step = self.step(int(ids[0, context_len - 1]))
            if not self.fast or self._live_used:
                return step
            # the model's attention did not take the live rows (its own code between the cache and
            # the attention function): redo the step on the plain path, which needs nothing of it
            self.fast = False
        return step

    def step(self, token_id: int) -> Step:
        """Feed one token at the next position with gradients on; the past stays constant."""
        if self._cache is None:
            raise RuntimeError("call start() before step()")
        model = self.model
        device = model.get_input_embeddings().weight.device
        ids = torch.tensor([[int(token_id)]], device=device)
        keys = self._position + 2  # the cached past plus this token
        if self._mask.shape[-1] < keys:
            self._mask = torch.cat([self._mask, self._mask.new_ones(self._mask.shape[0], keys - self._mask.shape[-1])], -1)
        kwargs: dict[str, Any] = {"attention_mask": self._mask[:, :keys]}
        if self._positions is not None:
            if self._next_positions is not None:
                self._positions, self._next_positions = self._next_positions, None
            else:
                self._positions = self._positions[..., -1:] + 1  # generate()'s rule: the last position plus one
            kwargs["position_ids"] = self._positions
        try:
            with torch.enable_grad(), attention.scope(model) if self.fast else nullcontext():
                embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
                out = model(inputs_embeds=embeds, use_cache=True, output_attentions=True,
                            **{self._cache_kw: self._cache}, **kwargs)
            self._live_used = all(attention.was_used(v) for v in self._handed)
        finally:
            self._handed.clear()  # keep no reference to this step's graph past the forward
        attentions = out.attentions
        if attentions is None or any(attentions[l] is None for l in self.layers):
            raise UnsupportedModelError(
                f"{type(model).__name__} returned no attention weights; it must run eager attention"
            )
        self._cache = returned_cache(out)
        _detach_cache(self._cache)
        self._position += 1
        graph_attn = [attentions[l] for l in self.layers]  # each (1, heads, 1, q + 1)
        expected = self._position + 1
        if graph_attn[0].shape[-1] != expected:
            raise UnsupportedModelError(
                f"attention row covers {graph_attn[0].shape[-1]} keys, expected {expected}; "
                "sliding-window or compressed caches are not supported"
            )
        logits = out.logits[0, -1]
        return Step(
            position=self._position,
            logits=logits.detach().float(),
            attention=torch.stack([a[0, :, 0, :].detach().float() for a in graph_attn]),
            _graph_logits=logits,
            _graph_attn=graph_attn,
        )


def saliency_rows(
    model: Any, inputs: Mapping[str, Any], answer_start: int, layers: Sequence[int] | None = None
) -> Tensor:
    """Teacher-forced saliency rows of every answer token (paper Eqs. 2-5).

    Args:
        model: An HF LVLM loaded with eager attention (see :func:`~lvsal_data.load_lvlm`).
        inputs: Model inputs of prompt + answer, batch 1.
        answer_start: Index of the first answer token in ``input_ids``.
        layers: Layer indices (default: all layers).

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
    if not 2 <= answer_start < seq:
        raise InputError(f"answer_start={answer_start} must be in [2, {seq - 1}] for a sequence of {seq}")
    engine = SaliencyEngine(model, layers)
    out = torch.zeros(seq - answer_start, len(engine.layers), seq)
    step = engine.start(inputs, answer_start)
    for i, pos in enumerate(range(answer_start, seq)):
        token = int(ids[0, pos])
        out[i, :, : pos] = step.saliency([token])[0].cpu()
        if pos + 1 < seq:
            step = engine.step(token)
    return out


__all__ = ["SaliencyEngine", "Step", "default_target_layers", "normalized_saliency", "saliency_rows"]
