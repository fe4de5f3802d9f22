"""Decoding strategies, registered by name in :data:`lvsal_data.registry.DECODINGS`: ``greedy``,
``sample``, ``sgrs``, ``locore``, ``sgrs+locore``, ``guided`` (detector-guided). Each builds itself from the run's
:class:`~lvsal_data.config.DecodingOptions` (:func:`build_decoder`)."""

from __future__ import annotations

from typing import Any

from ..config import DecodingOptions
from ..registry import DECODINGS
from .base import AncestralSampling, Choice, Context, Decoder, Greedy, StepView
from .guided import Guided
from .locore import LocoRE, LocoREParams, SGRSLocoRE, locore
from .sgrs import SGRS


def build_decoder(name: str, options: DecodingOptions | None = None,
                  calibration: dict[str, Any] | None = None) -> Decoder:
    """The registered decoding ``name``, configured by ``options`` (SGRS's alpha and W from the
    loaded ``calibration`` where the options leave them unset, else the paper's defaults)."""
    return DECODINGS[name].from_options(options or DecodingOptions(), calibration)


__all__ = ["AncestralSampling", "Choice", "Context", "DECODINGS", "Decoder", "DecodingOptions", "Greedy", "Guided",
           "LocoRE", "LocoREParams", "SGRS", "SGRSLocoRE", "StepView", "build_decoder", "locore"]
