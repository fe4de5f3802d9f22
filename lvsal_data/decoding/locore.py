"""LocoRE: local coherence reinforcement (paper Eqs. 8-10) as hooks on eager attention.

After the token at position P is accepted, the query at P (which predicts P + 1) attends more to
the most recent answer tokens: keys j with answer_start <= j < P and P - j <= w_s (the w_s
answer tokens before P, not P's own key; Eq. 8) get their weight multiplied by gamma = 1 + beta,
in every head of the chosen layers. By default this adds log(1 + beta) to those pre-softmax
scores (identical to multiplying the post-softmax weights and renormalising); ``renormalize=False``
is the literal Eq. 9 (multiply after the softmax, no renormalisation). It never reaches into the
prompt (so never into the image).

It runs inside :func:`lvsal_data.attention.scope` (transformers' ``AttentionInterface``), so
``model.generate()`` works unchanged and the saliency engine traces through it::

    with locore(model, answer_start=prompt_len, beta=0.15):
        model.generate(**inputs)
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from ..attention import scope
from ..config import DecodingOptions
from ..errors import InputError
from .base import Greedy
from .sgrs import SGRS


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

    @classmethod
    def from_options(cls, options: DecodingOptions) -> "LocoREParams":
        layers = tuple(options.locore_layers) if options.locore_layers is not None else None
        return cls(beta=options.locore_beta, window=options.locore_window, layers=layers,
                   renormalize=not options.locore_literal)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers is not None else None
        return d


def recent_answer_mask(q_len: int, k_len: int, answer_start: int, window: int, device: torch.device) -> Tensor:
    """``(q_len, k_len)`` bool: query P (absolute k_len - q_len + row) boosts key j iff
    answer_start <= j < P and P - j <= window (Eq. 8: P's predecessors, not P itself)."""
    p = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    return (j >= answer_start) & (j < p) & (p - j <= window)


class _Boost:
    """The keys a query boosts: one contiguous slice at a decoding step (no mask to build), the
    :func:`recent_answer_mask` for a multi-token forward; None where nothing is boosted."""

    def __init__(self, params: LocoREParams, answer_start: int) -> None:
        self.params, self.answer_start = params, answer_start

    def keys(self, module: nn.Module, scores: Tensor) -> slice | Tensor | None:
        q_len, k_len = scores.shape[-2:]
        layers = self.params.layers
        if (layers is not None and module.layer_idx not in layers) or self.answer_start >= k_len:
            return None
        if q_len == 1:
            query_at = k_len - 1
            return slice(max(self.answer_start, query_at - self.params.window), query_at)
        return recent_answer_mask(q_len, k_len, self.answer_start, self.params.window, scores.device)

    def scores(self, module: nn.Module, scores: Tensor) -> Tensor:
        """Add log(gamma) to the boosted keys' pre-softmax scores (the default, renormalised)."""
        keys = self.keys(module, scores)
        if keys is None:
            return scores
        if isinstance(keys, slice):
            scores[..., keys] += math.log1p(self.params.beta)  # a fresh tensor: safe in place
            return scores
        return scores + keys.to(scores.dtype) * math.log1p(self.params.beta)

    def weights(self, module: nn.Module, weights: Tensor) -> Tensor:
        """Multiply the boosted keys' post-softmax weights by gamma (literal Eq. 9)."""
        keys = self.keys(module, weights)
        if keys is None:
            return weights
        if isinstance(keys, slice):
            weights = weights.clone()  # softmax's backward needs its own output intact
            weights[..., keys] *= 1.0 + self.params.beta
            return weights
        return weights * torch.where(keys, 1.0 + self.params.beta, 1.0).to(weights.dtype)


@contextmanager
def locore(model: Any, answer_start: int, params: LocoREParams | None = None, **kwargs: Any) -> Iterator[None]:
    """Run ``model`` with LocoRE inside the block (the previous attention is restored after).

    Args:
        model: An LVLM whose language model runs eager attention.
        answer_start: Index of the first answer token (the prompt length; with left padding,
            the padded prompt length).
        params: :class:`LocoREParams`, or pass its fields as keyword arguments.
    """
    params = params or LocoREParams(**{k: (tuple(v) if k == "layers" and v is not None else v)
                                       for k, v in kwargs.items()})
    n_layers = model.config.get_text_config().num_hidden_layers
    if params.layers is not None and not all(0 <= l < n_layers for l in params.layers):
        raise InputError(f"LocoRE layers {list(params.layers)} out of range for {n_layers} layers")
    boost = _Boost(params, int(answer_start))
    hooks = {"scores_hook": boost.scores} if params.renormalize else {"weights_hook": boost.weights}
    with scope(model, **hooks):
        yield


class LocoRE(Greedy):
    """Greedy decoding under LocoRE attention."""

    def __init__(self, params: LocoREParams | None = None) -> None:
        self.locore = params or LocoREParams()

    @classmethod
    def from_options(cls, options: DecodingOptions, calibration: dict[str, Any] | None = None) -> "LocoRE":
        return cls(LocoREParams.from_options(options))

    def attention(self, model: Any, answer_start: int) -> AbstractContextManager:
        return locore(model, answer_start, self.locore)

    def params(self) -> dict[str, Any]:
        return {"locore": self.locore.as_dict()}


class SGRSLocoRE(SGRS):
    """SGRS under LocoRE attention (the paper's combination)."""

    def __init__(self, params: LocoREParams | None = None, **sgrs: Any) -> None:
        super().__init__(**sgrs)
        self.locore = params or LocoREParams()

    @classmethod
    def from_options(cls, options: DecodingOptions, calibration: dict[str, Any] | None = None) -> "SGRSLocoRE":
        sgrs = SGRS.from_options(options, calibration)
        return cls(LocoREParams.from_options(options), **sgrs.params())

    def attention(self, model: Any, answer_start: int) -> AbstractContextManager:
        return locore(model, answer_start, self.locore)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "locore": self.locore.as_dict()}


__all__ = ["LocoRE", "LocoREParams", "SGRSLocoRE", "locore", "recent_answer_mask"]
