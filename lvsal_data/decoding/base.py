"""The decoding contract and the two base decodings (greedy, ancestral sampling).

A decoder sees one :class:`~lvsal_data.saliency.Step` at a time and returns a :class:`Choice`:
the token it emits, that token's saliency rows (computed with the step's single backward) and
a record of what it did (SGRS logs tries, rejections, fallback and threshold there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..registry import Registry
from ..models import Spans
from .locore import LocoREParams
from ..saliency import Step

DECODINGS: Registry[type["Decoder"]] = Registry("decoding")


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

    name = "base"
    generator: torch.Generator | None = None
    locore: "LocoREParams | None" = None  # set: decode under LocoRE attention

    def reset(self, context: Context) -> None:
        self.context = context
        self.generator = context.generator

    def choose(self, step: Step) -> Choice:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The parameters written into a trace manifest."""
        return {}


@DECODINGS.register("greedy")
class Greedy(Decoder):
    """Arg-max decoding."""

    name = "greedy"

    def choose(self, step: Step) -> Choice:
        token = int(step.logits.argmax())
        return Choice(token, step.saliency([token])[0])


@DECODINGS.register("sample")
class Sample(Decoder):
    """Ancestral sampling at ``temperature`` (seeded through the generator)."""

    name = "sample"

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def choose(self, step: Step) -> Choice:
        probs = torch.softmax(step.logits / self.temperature, dim=-1).cpu()
        token = int(torch.multinomial(probs, 1, generator=self.generator))
        return Choice(token, step.saliency([token])[0])

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
