"""The decoding contract and the two base decodings (greedy, ancestral sampling).

A decoder sees one :class:`~lvsal_data.saliency.Step` at a time and returns a :class:`Choice`:
the token it emits, that token's saliency rows (computed with the step's single backward) and
a record of what it did (SGRS logs tries, rejections, fallback and threshold there). It builds
itself from the run's options (:meth:`Decoder.from_options`) and says under which attention it
decodes (:meth:`Decoder.attention`), so a new decoding is one class, registered by name in
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
class Context:
    """What a decoder may know about the sequence it decodes."""

    spans: Spans
    target: list[int]  # indices into the traced layers of the Eq. 6 target layers
    generator: torch.Generator | None = None


class Decoder:
    """Base class: one instance decodes one sequence at a time (call :meth:`reset` first)."""

    generator: torch.Generator | None = None

    @classmethod
    def from_options(cls, options: DecodingOptions, calibration: dict[str, Any] | None = None) -> "Decoder":
        """The decoder a run's options (and its loaded calibration file, if any) configure."""
        return cls()

    def attention(self, model: Any, answer_start: int) -> AbstractContextManager:
        """The attention the decoder runs the model under (default: the model's own)."""
        return nullcontext()

    def reset(self, context: Context) -> None:
        self.context = context
        self.generator = context.generator

    def choose(self, step: Step) -> Choice:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The parameters written into a trace manifest."""
        return {}


class Greedy(Decoder):
    """Arg-max decoding."""

    def choose(self, step: Step) -> Choice:
        token = int(step.logits.argmax())
        return Choice(token, step.saliency([token])[0])


class AncestralSampling(Decoder):
    """Ancestral sampling at ``temperature`` (seeded through the generator); registered as ``sample``."""

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    @classmethod
    def from_options(cls, options: DecodingOptions, calibration: dict[str, Any] | None = None) -> "AncestralSampling":
        return cls(options.temperature)

    def choose(self, step: Step) -> Choice:
        probs = torch.softmax(step.logits / self.temperature, dim=-1).cpu()
        token = int(torch.multinomial(probs, 1, generator=self.generator))
        return Choice(token, step.saliency([token])[0])

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
