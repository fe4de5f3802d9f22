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


SGRS_ALPHA = 0.6  # the paper's alpha
SGRS_WINDOW = 5  # the release's W


@dataclass
class DecodingOptions:
    """Parameters of every decoding (each decoding reads its own); PAPER.md's defaults."""

    temperature: float = field(default=1.0, metadata={"help": "sample: softmax temperature"})
    sgrs_k: int = field(default=5, metadata={"help": "SGRS: top-K candidates"})
    sgrs_tries: int = field(default=3, metadata={"help": "SGRS: R, candidates tried before the fallback"})
    sgrs_alpha: float | None = field(default=None, metadata={
        "help": f"SGRS: threshold factor alpha (default: the calibration's, else {SGRS_ALPHA})"})
    sgrs_window: int | None = field(default=None, metadata={
        "help": f"SGRS: W, accepted tokens in the threshold history (default: the calibration's, else {SGRS_WINDOW})"})
    sgrs_deterministic: bool = field(default=False, metadata={"help": "SGRS: try candidates in probability order"})
    sgrs_fallback_in_history: bool = field(default=False, metadata={"help": "SGRS: fallback tokens enter the history (the release's choice)"})
    locore_beta: float = field(default=0.15, metadata={"help": "LocoRE: gamma = 1 + beta"})
    locore_window: int = field(default=5, metadata={"help": "LocoRE: w_s, most recent answer tokens boosted"})
    locore_layers: list[int] | None = field(default=None, metadata={"help": "LocoRE: layers (default: all)"})
    locore_literal: bool = field(default=False, metadata={"help": "LocoRE: multiply after the softmax without renormalising (literal Eq. 9)"})
    calibration: str | None = field(default=None, metadata={
        "help": "JSON from lvsal calibrate: SGRS's alpha, W and the target layers, where no option sets them"})


def load_calibration(path: str | Path) -> dict[str, Any]:
    """Read a calibration file (``lvsal calibrate``); checks the fields SGRS uses."""
    path = Path(path)
    data = read_json(path, what="calibration file")
    missing = [k for k in ("alpha", "window", "target_layers") if k not in data]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}; write it with lvsal calibrate")
    return data


def with_calibration(option: str, explicit: Any, calibration: dict[str, Any] | None, key: str,
                     default: Any) -> tuple[Any, str | None]:
    """One setting from an explicit option, a calibration file, or the default, in that order.

    Returns:
        (value, note): the note says, in one line, that an explicit option overrode a
        different calibrated value (None otherwise); callers print it and record it.
    """
    if explicit is not None:
        calibrated = None if calibration is None else calibration.get(key)
        note = (f"{option} {explicit} overrides the calibration's {key} {calibrated}"
                if calibrated is not None and calibrated != explicit else None)
        return explicit, note
    if calibration is not None:
        return calibration[key], None
    return default, None


def build_decoder(name: str, options: DecodingOptions | None = None,
                  calibration: dict[str, Any] | None = None) -> Decoder:
    """A configured decoder. SGRS's alpha and W come from ``options`` when set there, else
    from ``calibration`` (a loaded :func:`load_calibration` file), else the paper's defaults."""
    o = options or DecodingOptions()
    cls = DECODINGS[name]
    alpha, _ = with_calibration("--sgrs-alpha", o.sgrs_alpha, calibration, "alpha", SGRS_ALPHA)
    window, _ = with_calibration("--sgrs-window", o.sgrs_window, calibration, "window", SGRS_WINDOW)
    sgrs = dict(k=o.sgrs_k, tries=o.sgrs_tries, alpha=float(alpha), window=int(window),
                deterministic=o.sgrs_deterministic, fallback_in_history=o.sgrs_fallback_in_history)
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
           "SGRS", "SGRSLocoRE", "SGRS_ALPHA", "SGRS_WINDOW", "Sample", "build_decoder", "load_calibration", "locore",
           "with_calibration"]
