"""Eager attention whose backward skips the constant past: the saliency step's fast path.

A saliency step feeds one token with gradients on while the KV cache (the past) is a constant.
Differentiated naively, ``A @ V`` and ``q @ K^T`` still produce gradients for *every* cached key
and value row (the cache concatenation requires grad because its new row does), only to drop
all but the last row; with the K candidates of SGRS batched through ``vmap`` those full-size
outer products and their copies are most of the step's backward.

Here the cache hands the attention function its keys / values *detached*, together with the
step's live new rows (:func:`mark_live`), and the function adds each live row back through a
term that is exactly zero in the forward pass::

    scores = (q @ K^T) * scaling,   scores[..., -n:] += s - s.detach(),  s = (q.detach() @ k_new^T) * scaling
    out    = A @ V + A[..., -n:] @ (v_new - v_new.detach())

so every forward value is bitwise the eager one (``x - x.detach()`` is exactly zero, and adding
zero changes nothing), while the gradient reaches q, A, k_new and v_new exactly as through
eager attention, and never a past row. The tests check rows and tokens against the plain path
and against brute-force autograd.

The two products with the constant past, ``q @ K^T`` and ``A @ V``, run through
:func:`times_past`: the same ``torch.matmul`` forward, and a backward (``dq = dS @ K``,
``dA = dO @ V^T``) that, batched over SGRS's K candidates, no longer broadcasts the past into
K copies (autograd's built-in rule for a batched gradient times an unbatched operand does; it
was a third of the batched backward on the LLaVA-1.5-shaped benchmark).

The function (name ``lvsal_eager``) is registered with transformers' ``AttentionInterface``.
:func:`scope` is the one way a model is switched to it: a context manager that sets the language
model's attention implementation and an :class:`AttentionState` on its config, and restores the
previous ones on exit, so scopes nest (the saliency engine's steps inside a LocoRE scope). A
state carries optional hooks on the pre-softmax scores and the post-softmax weights: that is how
LocoRE plugs in (:mod:`lvsal_data.decoding.locore`) without a function of its own.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from .errors import UnsupportedModelError

NAME = "lvsal_eager"
#: Attention implementations whose post-softmax weights are in the graph.
EAGER_COMPATIBLE = frozenset({"eager", NAME})
_LIVE = "_lvsal_live"
_USED = "_lvsal_used"
_STATE = "_lvsal_attention"

ScoresHook = Callable[[nn.Module, Tensor], Tensor]  # (attention module, (batch, heads, q, k) scores) -> scores


@dataclass(frozen=True)
class AttentionState:
    """What :func:`eager_attention_forward` adds to eager attention inside a :func:`scope`.

    Attributes:
        scores_hook: Applied to the masked pre-softmax scores ``(batch, heads, q, k)``.
        weights_hook: Applied to the post-softmax weights.
        modules: ``id`` of the language model's self-attention modules: the only ones this
            function computes itself; every other caller (a vision tower sharing the config,
            a cross-attention layer) gets its own modeling file's eager attention, untouched.
    """

    scores_hook: ScoresHook | None = None
    weights_hook: ScoresHook | None = None
    modules: frozenset[int] = frozenset()


def attention_modules(model: Any) -> dict[int, nn.Module]:
    """``layer index -> self-attention module`` of the language model's decoder layers.

    Layers without self-attention are left out: the linear-attention or convolution layers of
    hybrid models (Qwen3.5, LFM2) and Llama 3.2 Vision's cross-attention layers (whose rows run
    over image tiles, not over the sequence). Their indices are the traced layers' numbers.
    """
    return {i: layer.self_attn for i, layer in enumerate(decoder_layers(model))
            if getattr(layer, "self_attn", None) is not None}


def decoder_layers(model: Any) -> nn.ModuleList:
    """The language model's decoder layers, in order (``model.get_decoder().layers``)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise UnsupportedModelError(f"{type(model).__name__}: no decoder layers found (model.get_decoder().layers)")
    return layers


@contextmanager
def scope(model: Any, **changes: Any) -> Iterator[AttentionState]:
    """Run ``model``'s language model with :func:`eager_attention_forward` inside the block.

    Args:
        model: An LVLM whose language model runs eager attention (or is in an outer scope).
        changes: :class:`AttentionState` fields to set on top of the enclosing scope's state.

    Restores the previous attention implementation and state on exit, whatever they were.

    Raises:
        UnsupportedModelError: The language model runs an attention that gives no weights.
    """
    config = model.config.get_text_config()
    previous_impl = config._attn_implementation
    if previous_impl not in EAGER_COMPATIBLE:
        raise UnsupportedModelError(f"saliency and LocoRE need eager attention, the model runs {previous_impl!r}")
    previous_state = getattr(config, _STATE, None)
    base = previous_state or AttentionState(modules=frozenset(map(id, attention_modules(model).values())))
    state = replace(base, **changes)
    register(NAME, eager_attention_forward)
    config._attn_implementation = NAME
    setattr(config, _STATE, state)
    try:
        yield state
    finally:
        config._attn_implementation = previous_impl
        if previous_state is None:
            delattr(config, _STATE)
        else:
            setattr(config, _STATE, previous_state)


def mark_live(full: Tensor, new: Tensor) -> Tensor:
    """A view of the detached cache tensor ``full`` that carries the step's live rows ``new``.

    ``full[..., -n:, :]`` must hold the values of ``new`` (n rows); the attention function
    differentiates through ``new`` and treats the rest as constant."""
    view = full.view_as(full)
    setattr(view, _LIVE, new)
    setattr(view, _USED, False)
    return view


def materialize(t: Tensor) -> Tensor:
    """The tensor of a :func:`mark_live` view with the gradient flowing into its live rows (what
    plain autograd sees); any other tensor as it is."""
    new = _live(t)
    if new is None:
        return t
    return torch.cat([t[..., : -new.shape[-2], :], new], dim=-2)


def was_used(t: Tensor) -> bool:
    """Whether an attention function consumed the live rows of a :func:`mark_live` view."""
    return bool(getattr(t, _USED, False))


def _live(t: Tensor) -> Tensor | None:
    new = getattr(t, _LIVE, None)
    if new is not None:
        setattr(t, _USED, True)
    return new


def _repeat_kv(t: Tensor, groups: int) -> Tensor:
    from transformers.models.llama.modeling_llama import repeat_kv

    return repeat_kv(t, groups)


class _TimesConstant(torch.autograd.Function):
    """``x @ c`` for a constant ``c`` (the detached past): the forward is exactly ``torch.matmul``.

    The backward ``dx = g @ c^T`` is ``torch.matmul`` called from Python, which the batched
    backward (``is_grads_batched``) maps over the K gradients one by one, each against ``c`` as
    it is; the built-in backward of ``matmul`` instead broadcasts ``c`` to K copies first."""

    @staticmethod
    def forward(x: Tensor, c: Tensor) -> Tensor:
        return torch.matmul(x, c)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (c,) = ctx.saved_tensors
        return torch.matmul(grad, c.transpose(-1, -2)), None


def times_past(x: Tensor, past: Tensor) -> Tensor:
    """``torch.matmul(x, past)`` where ``past`` is constant (no gradient), forward bitwise equal."""
    if past.requires_grad:
        raise ValueError("times_past: the past must be detached")
    return _TimesConstant.apply(x, past) if x.requires_grad else torch.matmul(x, past)


def attention_scores(module: nn.Module, query: Tensor, key: Tensor, scaling: float) -> Tensor:
    """``(q @ K^T) * scaling`` as eager attention computes it, plus the live-key term."""
    groups = module.num_key_value_groups
    new = _live(key)
    if new is None:
        return torch.matmul(query, _repeat_kv(key, groups).transpose(2, 3)) * scaling
    k_new = _repeat_kv(new, groups)
    weights = times_past(query, _repeat_kv(key, groups).transpose(2, 3)) * scaling
    live = torch.matmul(query.detach(), k_new.transpose(2, 3)) * scaling
    weights[..., -k_new.shape[-2]:] += live - live.detach()  # exactly zero; a fresh tensor: safe in place
    return weights


def attend(module: nn.Module, weights: Tensor, value: Tensor) -> Tensor:
    """``A @ V`` as eager attention computes it, plus the live-value term."""
    groups = module.num_key_value_groups
    new = _live(value)
    if new is None:
        return torch.matmul(weights, _repeat_kv(value, groups))
    v_new = _repeat_kv(new, groups)
    out = times_past(weights, _repeat_kv(value, groups))
    return out + torch.matmul(weights[..., -v_new.shape[-2]:], v_new - v_new.detach())  # exactly zero


#: Keywords of attention functions this module does not reproduce (attention sinks): a call with
#: one of them set goes to the model's own eager function.
_FOREIGN = ("s_aux", "sinks")


def own_eager(module: nn.Module) -> Callable[..., tuple[Tensor, Tensor]]:
    """The eager attention function of ``module``'s own modeling file."""
    function = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if function is None:
        raise UnsupportedModelError(f"{type(module).__module__} defines no eager_attention_forward to fall back on")
    return function


def eager_attention_forward(
    module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
    scaling: float | None = None, dropout: float = 0.0, softcap: float | None = None, **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """The language model's eager attention, operation for operation (Llama's, and Gemma 2/3's with
    its default scaling and logit soft-capping), with the live rows and the hooks of the
    enclosing :func:`scope`. Other callers get their own eager function."""
    state: AttentionState = getattr(module.config, _STATE, None) or AttentionState()
    if id(module) not in state.modules or any(kwargs.get(k) is not None for k in _FOREIGN):
        if state.scores_hook is not None or state.weights_hook is not None:
            if id(module) in state.modules:
                raise UnsupportedModelError(f"{type(module).__name__} uses attention sinks: LocoRE cannot be applied")
        return own_eager(module)(module, query, materialize(key), materialize(value), attention_mask, scaling=scaling,
                                 dropout=dropout, softcap=softcap, **kwargs)
    if scaling is None:
        scaling = module.head_dim**-0.5
    weights = attention_scores(module, query, key, scaling)
    if softcap is not None:
        weights = torch.tanh(weights / softcap) * softcap
    if attention_mask is not None:
        weights = weights + attention_mask
    if state.scores_hook is not None:
        weights = state.scores_hook(module, weights)
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    if state.weights_hook is not None:
        weights = state.weights_hook(module, weights)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    out = attend(module, weights, value)
    return out.transpose(1, 2).contiguous(), weights


def register(name: str, function: Any) -> None:
    """Register an eager-style attention function (and eager masks) under ``name``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask

    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, function)
    if name not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(name, eager_mask)  # without it transformers builds no causal mask


__all__ = ["AttentionState", "EAGER_COMPATIBLE", "NAME", "attend", "attention_modules", "attention_scores",
           "decoder_layers",
           "eager_attention_forward", "mark_live", "materialize", "own_eager", "register", "scope", "was_used"]
