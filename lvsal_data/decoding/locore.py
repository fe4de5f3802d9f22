"""LocoRE: local coherence reinforcement (paper Eqs. 8-10) as a registered attention function.

After the token at position P is accepted, the query at P (which predicts P + 1) attends more to
the most recent answer tokens: keys j with answer_start <= j < P and P - j <= w_s (the w_s
answer tokens before P, not P's own key; Eq. 8) get their weight multiplied by gamma = 1 + beta,
in every head of the chosen layers. By default this adds
log(1 + beta) to those pre-softmax scores (identical to multiplying the post-softmax weights and
renormalising); ``renormalize=False`` is the literal Eq. 9 (multiply after the softmax, no
renormalisation). It never reaches into the prompt (so never into the image).

It plugs into transformers through ``AttentionInterface`` (name ``lvsal_locore``), so
``model.generate()`` works unchanged and the saliency engine traces through it::

    with locore(model, answer_start=prompt_len, beta=0.15):
        model.generate(**inputs)
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch
from torch import nn

from ..attention import attend, attention_scores, register
from ..errors import InputError, UnsupportedModelError

NAME = "lvsal_locore"


@dataclass(frozen=True)
class LocoREParams:
    """LocoRE's parameters (beta: 0.15 for LLaVA-1.5, 0.20 for Qwen2-VL in the paper)."""

    beta: float = 0.15
    window: int = 5  # w_s (the paper does not give it; ours)
    layers: tuple[int, ...] | None = None  # None: all layers (ours)
    renormalize: bool = True  # add log(1+beta) before the softmax (ours); False: literal Eq. 9

    def __post_init__(self) -> None:
        if self.beta < 0 or self.window < 0:
            raise InputError(f"LocoRE needs beta >= 0 and window >= 0 (got beta={self.beta}, window={self.window})")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers is not None else None
        return d


_ACTIVE: dict[int, tuple[LocoREParams, int]] = {}  # id(text config) -> (params, answer_start)


def recent_answer_mask(q_len: int, k_len: int, answer_start: int, window: int, device: torch.device) -> torch.Tensor:
    """``(q_len, k_len)`` bool: query P (absolute k_len - q_len + row) boosts key j iff
    answer_start <= j < P and P - j <= window (Eq. 8: P's predecessors, not P itself)."""
    p = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    return (j >= answer_start) & (j < p) & (p - j <= window)


def locore_attention_forward(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention (same operations and order as transformers' Llama eager) plus LocoRE; it
    shares the saliency step's fast path (:mod:`lvsal_data.attention`)."""
    attn_weights = attention_scores(module, query, key, scaling)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    active = _ACTIVE.get(id(module.config))
    boost: slice | torch.Tensor | None = None
    if active is not None:
        params, answer_start = active
        q_len, k_len = query.shape[-2], key.shape[-2]
        if (params.layers is None or module.layer_idx in params.layers) and answer_start < k_len:
            if q_len == 1:  # a decoding step: the boosted keys are one contiguous slice (no mask to build)
                query_at = k_len - 1
                boost = slice(max(answer_start, query_at - params.window), query_at)
            else:
                boost = recent_answer_mask(q_len, k_len, answer_start, params.window, query.device)
            if params.renormalize:
                if isinstance(boost, slice):
                    attn_weights[..., boost] += math.log1p(params.beta)  # a fresh tensor: safe in place
                else:
                    attn_weights = attn_weights + boost.to(attn_weights.dtype) * math.log1p(params.beta)
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    if boost is not None and not active[0].renormalize:  # literal Eq. 9: scale after the softmax
        if isinstance(boost, slice):
            attn_weights = attn_weights.clone()  # softmax's backward needs its own output intact
            attn_weights[..., boost] *= 1.0 + active[0].beta
        else:
            attn_weights = attn_weights * torch.where(boost, 1.0 + active[0].beta, 1.0).to(attn_weights.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = attend(module, attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


@contextmanager
def locore(model: Any, answer_start: int, params: LocoREParams | None = None, **kwargs: Any) -> Iterator[None]:
    """Run ``model`` with LocoRE inside the block (restores eager attention after).

    Args:
        model: An LVLM whose language model runs eager attention.
        answer_start: Index of the first answer token (the prompt length; with left padding,
            the padded prompt length).
        params: :class:`LocoREParams`, or pass its fields as keyword arguments.
    """
    params = params or LocoREParams(**{k: (tuple(v) if k == "layers" and v is not None else v)
                                       for k, v in kwargs.items()})
    cfg = model.config.get_text_config()
    if cfg._attn_implementation != "eager":
        raise UnsupportedModelError(f"LocoRE needs eager attention, the model runs {cfg._attn_implementation!r}")
    n_layers = cfg.num_hidden_layers
    if params.layers is not None and not all(0 <= l < n_layers for l in params.layers):
        raise InputError(f"LocoRE layers {list(params.layers)} out of range for {n_layers} layers")
    register(NAME, locore_attention_forward)
    _ACTIVE[id(cfg)] = (params, int(answer_start))
    cfg._attn_implementation = NAME
    try:
        yield
    finally:
        cfg._attn_implementation = "eager"
        _ACTIVE.pop(id(cfg), None)


__all__ = ["LocoREParams", "NAME", "locore", "locore_attention_forward", "recent_answer_mask"]
