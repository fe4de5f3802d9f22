"""SGRS: saliency-guided rejection sampling (paper Algorithm 1), faithful and fast.

At each step: take the top-K candidates; score all K with the paper's Eq. 6 saliency from one
forward and one batched backward (they share the step's graph, only the loss differs); set
tau = alpha x mean(saliency of the last W accepted tokens) (0 with no history); try up to R
candidates, drawn from the top-K probabilities renormalised over the untried ones (a softmax of
their logits in float64, so a rejected top-1 whose probability rounds to 1.0 leaves valid weights;
probability order if the mass still vanishes), or in probability order in deterministic mode,
and accept the first whose saliency >= tau; if none passes, take the top-K candidate with the
highest saliency (the fallback).

Unlike the public release, the score is read on the row that emits the candidate's logits (the
release read the candidate's own row, whose gradient is exactly zero, so every candidate scored 0
and its "SGRS" was plain top-5 sampling).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import Tensor

from ..aggregates import eq6_score
from ..config import DecodingOptions, sgrs_settings
from ..errors import InputError
from .base import Choice, Context, Decoder


class SGRS(Decoder):
    """Saliency-guided rejection sampling.

    Args:
        k: Top-K candidates (paper code: 5).
        tries: R, candidates tried before the fallback (code: 3).
        alpha: Threshold factor (paper: 0.6; 0.9 in an ablation). 0 gives the base decoding.
        window: W, accepted tokens in the threshold's history (code: 5).
        deterministic: Try candidates in probability order instead of sampling them.
        fallback_in_history: Whether a fallback token enters the history (paper: no; code: yes).
    """

    def __init__(self, k: int = 5, tries: int = 3, alpha: float = 0.6, window: int = 5,
                 deterministic: bool = False, fallback_in_history: bool = False) -> None:
        if k < 1 or tries < 1 or window < 1:
            raise InputError(f"SGRS needs k, tries and window >= 1 (got k={k}, tries={tries}, window={window})")
        if alpha < 0:
            raise InputError(f"SGRS alpha must be >= 0, got {alpha}")
        self.k, self.tries, self.alpha, self.window = k, tries, alpha, window
        self.deterministic, self.fallback_in_history = deterministic, fallback_in_history

    @classmethod
    def from_options(cls, options: DecodingOptions, calibration: dict[str, Any] | None = None) -> "SGRS":
        """SGRS with the options' parameters; alpha and W from the calibration where unset."""
        alpha, window, _ = sgrs_settings(options, calibration)
        return cls(k=options.sgrs_k, tries=options.sgrs_tries, alpha=alpha, window=window,
                   deterministic=options.sgrs_deterministic, fallback_in_history=options.sgrs_fallback_in_history)

    def reset(self, context: Context) -> None:
        super().reset(context)
        self.history: deque[float] = deque(maxlen=self.window)

    def threshold(self) -> float:
        return self.alpha * sum(self.history) / len(self.history) if self.history else 0.0

    def propose(self, logits: Tensor) -> Tensor:
        """The top-K candidates, in probability order."""
        return logits.topk(min(self.k, logits.numel())).indices

    def decide(self, candidates: Tensor, logits: Tensor, rows: Tensor) -> Choice:
        """Algorithm 1 on the candidates' rows (``(K, layers, q + 1)``, from one batched backward)."""
        scores = eq6_score(rows, self.context.spans, self.context.target).tolist()
        tau = self.threshold()
        untried = list(range(len(candidates)))
        top_logits = logits[candidates].cpu().double()
        accepted, tried = None, 0
        while untried and tried < self.tries:
            pick = untried[0] if self.deterministic else self._draw(top_logits, untried)
            untried.remove(pick)
            tried += 1
            if scores[pick] >= tau:
                accepted = pick
                break
        fallback = accepted is None
        if fallback:
            accepted = max(range(len(scores)), key=lambda i: (scores[i], -i))
        if not fallback or self.fallback_in_history:
            self.history.append(scores[accepted])
        record = {"tries": tried, "rejected": tried - (0 if fallback else 1), "fallback": fallback, "tau": tau}
        return Choice(int(candidates[accepted]), rows[accepted], record)

    def _draw(self, logits: torch.Tensor, untried: list[int]) -> int:
        """One candidate drawn from the top-K probabilities renormalised over ``untried``."""
        weights = torch.softmax(logits[untried], dim=0)  # float64: exp(l - max), the max's weight is 1
        if not torch.isfinite(weights).all() or float(weights.sum()) <= 0:
            return untried[0]  # no usable mass: probability order
        return untried[int(torch.multinomial(weights, 1, generator=self.generator))]

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "tries": self.tries, "alpha": self.alpha, "window": self.window,
                "deterministic": self.deterministic, "fallback_in_history": self.fallback_in_history}
