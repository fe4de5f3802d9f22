"""The decoding contract and the two base decodings (greedy, ancestral sampling).

A decoder decodes one sequence in two phases per step, so that a whole batch shares one backward:
:meth:`Decoder.propose` names the candidate tokens whose saliency rows its decision needs (one
for greedy and sampling, the top-K for SGRS), and :meth:`Decoder.decide` takes their rows and
returns a :class:`Choice`: the token it emits, that token's rows, and a record of what it did
(SGRS logs tries, rejections, fallback and threshold there). :meth:`Decoder.choose` runs both on
a batch-1 :class:`~lvsal_data.saliency.Step`. A decoder builds itself from the run's options
(:meth:`Decoder.from_options`) and says under which attention it decodes
(:meth:`Decoder.attention`), so a new decoding is one class, registered by name in
:data:`lvsal_data.registry.DECODINGS`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..config import DecodingOptions
from ..errors import InputError
from ..models import Spans
from ..saliency import Step


@dataclass
class Choice:
    """What a decoder emitted at one step."""

    token: int
    rows: Tensor  # (layers, q + 1) Shat of the emitted token
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepView:
    """What one step of a sequence shows a decoder besides its candidates' rows (the guided
    decoding reads it to score candidates as the collector scores tokens)."""

    position: int  # the query row q
    attention: Tensor  # (layers, heads, q + 1) attention rows of the traced layers
    logprobs: Tensor  # (vocab,) log-softmax of the step's logits
    entropy: float  # of the step's next-token distribution
    hidden: Any = None  # (hidden layers, D) float16 numpy: the run's stored hidden states, if any


@dataclass
class Context:
    """What a decoder may know about the sequence it decodes."""

    spans: Spans
    target: list[int]  # indices into the traced layers of the Eq. 6 target layers
    generator: torch.Generator | None = None
    tokenizer: Any = None  # the model's tokenizer, where the caller has one


class Decoder:
    """Base class: one instance decodes one sequence (call :meth:`reset` first); a batch has one
    instance per sample, each with its own state and generator."""

    generator: torch.Generator | None = None

    @classmethod
    def from_options(cls, options: DecodingOptions, calibration: dict[str, Any] | None = None) -> "Decoder":
        """The decoder a run's options (and its loaded calibration file, if any) configure."""
        return cls()

    def attention(self, model: Any, answer_start: int) -> AbstractContextManager:
        """The attention the decoder runs the model under (default: the model's own)."""
        return nullcontext()

    def reset(self, context: Context) -> None:
        """Start a new sequence. Assign every per-sequence attribute here (never mutate one in
        place): the collector gives each sample of a batch a shallow copy of one configured
        decoder and resets it."""
        self.context = context
        self.generator = context.generator

    def observe(self, view: StepView) -> None:
        """See the step before :meth:`decide` (default: nothing to see)."""

    def propose(self, logits: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``(K,)`` token ids whose saliency rows the decision needs, from the ``(vocab,)`` logits
        (K must not depend on the sample: a batch shares one backward)."""
        raise NotImplementedError

    def decide(self, candidates: Tensor, logits: Tensor, rows: Tensor) -> Choice:
        """The emitted token, given the candidates' ``(K, layers, q + 1)`` rows (default: the first)."""
        return Choice(int(candidates[0]), rows[0])

    def choose(self, step: Step) -> Choice:
        """Decide a batch-1 step alone: propose, one backward, decide."""
        logits = step.logits[0]
        candidates = self.propose(logits)
        return self.decide(candidates, logits, step.saliency(candidates.reshape(1, -1))[0])

    def params(self) -> dict[str, Any]:
        """The parameters written into a trace manifest."""
        return {}


class Greedy(Decoder):
    """Arg-max decoding."""

    def propose(self, logits: Tensor) -> Tensor:
        return logits.argmax().reshape(1)


class AncestralSampling(Decoder):
    """Ancestral sampling at ``temperature`` (seeded through the generator); registered as ``sample``."""

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    @classmethod
    def from_options(cls, options: DecodingOptions, calibration: dict[str, Any] | None = None) -> "AncestralSampling":
        return cls(options.temperature)

    def propose(self, logits: Tensor) -> Tensor:
        probs = torch.softmax(logits / self.temperature, dim=-1).cpu()
        return torch.multinomial(probs, 1, generator=self.generator)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
