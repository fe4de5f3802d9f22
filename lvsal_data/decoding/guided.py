"""Detector-guided decoding: let a fitted hallucination detector choose among the top-K.

At each step the top-K candidates' saliency rows come from the step's one batched backward (as
for SGRS). Each candidate gets the feature row the collector would write had it been emitted:
its own saliency summaries and log-probability, and the step's shared attention, image
attention, entropy and hidden states. The saved detector (``lvsal fit-detector``) scores those
rows, and among the candidates whose probability is at least ``floor`` times the most likely
one's, the decoding emits the one with the lowest predicted hallucination probability (ties go
to the more likely candidate, so a detector that scores every candidate alike gives greedy).

When it intervenes (``when``):

- ``mentions`` (default): only at steps whose most likely candidate could start an object
  mention: it starts a new word that is the beginning of a known object name (the vocabulary of
  :mod:`lvsal_data.vocab`). Detectors are fitted on mention starts, so this is where their
  scores mean what they were trained to mean;
- ``every``: at every step.

Each step records whether it intervened, whether the emitted token differs from the most
likely candidate, and the detector's probability of both (the tokens table's ``guided_*``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from ..aggregates import summarize, summary_columns
from ..config import DecodingOptions
from ..errors import InputError
from ..scoring import LinearDetector
from .base import Choice, Context, Decoder, StepView

WHEN = ("mentions", "every")
_WORD = re.compile(r"[a-z]+")


@lru_cache(maxsize=1)
def _name_prefixes() -> frozenset[str]:
    """Every prefix of every object surface form (lower case)."""
    from ..vocab import surface_forms

    return frozenset(form[:n] for form in surface_forms() for n in range(1, len(form) + 1))


class Guided(Decoder):
    """Detector-guided decoding (see the module doc).

    Args:
        detector: A saved logistic detector (:class:`~lvsal_data.scoring.LinearDetector`).
        k: Candidates considered per step (the most likely K).
        floor: A candidate is eligible if its probability is >= ``floor`` x the top candidate's.
        when: ``mentions`` or ``every`` (see the module doc).
    """

    def __init__(self, detector: LinearDetector, k: int = 5, floor: float = 0.2, when: str = "mentions") -> None:
        if k < 1:
            raise InputError(f"guided decoding needs k >= 1, got {k}")
        if not 0 <= floor <= 1:
            raise InputError(f"--guided-floor must be in [0, 1], got {floor}")
        if when not in WHEN:
            raise InputError(f"--guided-when must be one of {', '.join(WHEN)}, got {when!r}")
        self.detector, self.k, self.floor, self.when = detector, k, floor, when
        self._lookback, self._hidden = detector.reads("lookback"), detector.reads("hidden")

    @classmethod
    def from_options(cls, options: DecodingOptions, calibration: dict[str, Any] | None = None) -> "Guided":
        path = getattr(options, "detector", None)
        if not path:
            raise InputError("--decoding guided needs --detector FILE (a detector.json from lvsal fit-detector)")
        return cls(LinearDetector.load(path), k=options.guided_k, floor=options.guided_floor, when=options.guided_when)

    def reset(self, context: Context) -> None:
        super().reset(context)
        if self.when == "mentions" and context.tokenizer is None:
            raise InputError("guided decoding at mention starts needs the tokenizer in its Context")
        self.answer: list[int] = []
        self.view: StepView | None = None

    def observe(self, view: StepView) -> None:
        self.view = view

    def propose(self, logits: Tensor) -> Tensor:
        return logits.topk(min(self.k, logits.numel())).indices

    def decide(self, candidates: Tensor, logits: Tensor, rows: Tensor) -> Choice:
        probs = torch.softmax(logits.double(), dim=-1)[candidates].cpu()
        eligible = [i for i in range(len(candidates)) if float(probs[i]) >= self.floor * float(probs[0])]
        top = int(candidates[0])
        record: dict[str, Any] = {"intervened": False, "replaced": False, "p_top": None, "p_chosen": None}
        pick = 0
        if len(eligible) > 1 and (self.when == "every" or self._could_start_mention(top)):
            scores = self.score(candidates[eligible], rows[eligible])
            best = min(range(len(eligible)), key=lambda i: (scores[i], i))
            pick = eligible[best]
            record = {"intervened": True, "replaced": pick != 0, "p_top": float(scores[0]),
                      "p_chosen": float(scores[best])}
        token = int(candidates[pick])
        self.answer.append(token)
        return Choice(token, rows[pick], record)

    def score(self, candidates: Tensor, rows: Tensor) -> list[float]:
        """The detector's hallucination probability of each candidate, from the feature row the
        collector would write for it (its ``(K, layers, q + 1)`` rows and this step's view)."""
        view, ctx = self.view, self.context
        if view is None:
            raise RuntimeError("guided decoding needs observe() before decide()")
        if self._hidden and view.hidden is None:
            raise InputError(f"the detector {self.detector.path} reads hidden states: collect with --hidden-states "
                             "and the hidden-state settings of the traces it was fitted on")
        table = []
        for c, r in zip(candidates.tolist(), rows):
            summary = summarize(r, view.attention, ctx.spans, view.position, ctx.target, self._lookback)
            table.append(summary_columns(summary, float(view.logprobs[c]), view.entropy,
                                         view.hidden if self._hidden else None, self._lookback))
        return self.detector.score_rows(pd.DataFrame(table), "the guided decoding's candidates").tolist()

    def _could_start_mention(self, token: int) -> bool:
        """Whether ``token`` appended to the answer starts a word that begins an object name."""
        tok = self.context.tokenizer
        before = tok.decode(self.answer, skip_special_tokens=True)
        after = tok.decode([*self.answer, token], skip_special_tokens=True)
        piece = after[len(before):] if after.startswith(before) else after
        if not piece.strip() or not (not before.strip() or before[-1].isspace() or piece[0].isspace()):
            return False
        word = _WORD.match(piece.strip().lower())
        return word is not None and word.group() in _name_prefixes()

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "floor": self.floor, "when": self.when, "detector": self.detector.path,
                "detector_feature_set": self.detector.feature_set}


__all__ = ["Guided", "WHEN"]
