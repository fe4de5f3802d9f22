"""Decoding strategies, registered by name in :data:`DECODINGS`: ``greedy``, ``sample``,
``sgrs``, ``locore``, ``sgrs+locore``. :class:`DecodingOptions` holds every parameter (the CLI
is built from it) and :func:`build_decoder` makes a configured decoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import read_json
from .base import DECODINGS, Choice, Context, Decoder, Greedy, Sample
from .locore import LocoREParams, locore
from .sgrs import SGRS


@DECODINGS.register("locore")
class LocoRE(Greedy):
    """Greedy decoding under LocoRE attention."""

    name = "locore"

    def __init__(self, params: LocoREParams | None = None) -> None:
        self.locore = params or LocoREParams()

    def params(self) -> dict[str, Any]:
        return {"locore": self.locore.as_dict()}


@DECODINGS.register("sgrs+locore")
class SGRSLocoRE(SGRS):
    """SGRS under LocoRE attention (the paper's combination)."""

    name = "sgrs+locore"

    def __init__(self, params: LocoREParams | None = None, **sgrs: Any) -> None:
        super().__init__(**sgrs)
        self.locore = params or LocoREParams()

    def params(self) -> dict[str, Any]:
        return {**super().params(), "locore": self.locore.as_dict()}


@dataclass
class DecodingOptions:
    """Parameters of every decoding (each decoding reads its own); PAPER.md's defaults."""

    temperature: float = field(default=1.0, metadata={"help": "sample: softmax temperature"})
    sgrs_k: int = field(default=5, metadata={"help": "SGRS: top-K candidates"})
    sgrs_tries: int = field(default=3, metadata={"help": "SGRS: R, candidates tried before the fallback"})
    sgrs_alpha: float = field(default=0.6, metadata={"help": "SGRS: threshold factor alpha"})
    sgrs_window: int = field(default=5, metadata={"help": "SGRS: W, accepted tokens in the threshold history"})
    sgrs_deterministic: bool = field(default=False, metadata={"help": "SGRS: try candidates in probability order"})
    sgrs_fallback_in_history: bool = field(default=False, metadata={"help": "SGRS: fallback tokens enter the history (the release's choice)"})
    locore_beta: float = field(default=0.15, metadata={"help": "LocoRE: gamma = 1 + beta"})
    locore_window: int = field(default=5, metadata={"help": "LocoRE: w_s, most recent answer tokens boosted"})
    locore_layers: list[int] | None = field(default=None, metadata={"help": "LocoRE: layers (default: all)"})
    locore_literal: bool = field(default=False, metadata={"help": "LocoRE: multiply after the softmax without renormalising (literal Eq. 9)"})
    calibration: str | None = field(default=None, metadata={"help": "JSON from lvsal calibrate: overrides SGRS alpha, W and the target layers"})


def load_calibration(path: str | Path) -> dict[str, Any]:
    """Read a calibration file (``lvsal calibrate``); checks the fields SGRS uses."""
    path = Path(path)
    data = read_json(path, what="calibration file")
    missing = [k for k in ("alpha", "window", "target_layers") if k not in data]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}; write it with lvsal calibrate")
    return data


def build_decoder(name: str, options: DecodingOptions | None = None) -> Decoder:
    """A configured decoder; ``options.calibration`` overrides SGRS's alpha and window."""
    o = options or DecodingOptions()
    cls = DECODINGS[name]
    alpha, window = o.sgrs_alpha, o.sgrs_window
    if o.calibration:
        cal = load_calibration(o.calibration)
        alpha, window = float(cal["alpha"]), int(cal["window"])
    sgrs = dict(k=o.sgrs_k, tries=o.sgrs_tries, alpha=alpha, window=window, deterministic=o.sgrs_deterministic,
                fallback_in_history=o.sgrs_fallback_in_history)
    loco = LocoREParams(beta=o.locore_beta, window=o.locore_window,
                        layers=tuple(o.locore_layers) if o.locore_layers is not None else None,
                        renormalize=not o.locore_literal)
    if cls is Sample:
        return Sample(o.temperature)
    if cls is SGRS:
        return SGRS(**sgrs)
    if cls is SGRSLocoRE:
        return SGRSLocoRE(loco, **sgrs)
    if cls is LocoRE:
        return LocoRE(loco)
    return cls()


__all__ = ["DECODINGS", "Choice", "Context", "Decoder", "DecodingOptions", "Greedy", "LocoRE", "LocoREParams",
           "SGRS", "SGRSLocoRE", "Sample", "build_decoder", "load_calibration", "locore"]
