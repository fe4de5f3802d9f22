"""The typed configuration of a collection run, and how a setting is resolved.

:class:`DecodingOptions` holds every decoding's parameters and :class:`CollectConfig` a whole
run; the ``lvsal`` command builds its options from them (``lvsal_data.commands.options``) and the
collector writes them into the manifest. Each default is declared here once. Settings that
several places can give are resolved once per run, in this order: an explicit option, the
calibration file (``--calibration``), the source's protocol, the paper's default. This module
imports no torch, so the command line can build its options quickly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import read_json
from .registry import DECODINGS

SGRS_ALPHA = 0.6  # the paper's alpha
SGRS_WINDOW = 5  # the release's W
#: Answer length cap when neither the option nor the source's protocol sets one.
DEFAULT_MAX_NEW_TOKENS = 64


def _decodings() -> list[str]:
    return DECODINGS.names()


@dataclass
class DecodingOptions:
    """Parameters of every decoding (each decoding reads its own); defaults are the paper's."""

    temperature: float = field(default=1.0, metadata={"help": "sample: softmax temperature"})
    sgrs_k: int = field(default=5, metadata={"help": "SGRS: top-K candidates"})
    sgrs_tries: int = field(default=3, metadata={"help": "SGRS: R, candidates tried before the fallback"})
    sgrs_alpha: float | None = field(default=None, metadata={
        "help": f"SGRS: threshold factor alpha (default: the calibration's, else {SGRS_ALPHA})"})
    sgrs_window: int | None = field(default=None, metadata={
        "help": f"SGRS: W, accepted tokens in the threshold history (default: the calibration's, else {SGRS_WINDOW})"})
    sgrs_deterministic: bool = field(default=False, metadata={"help": "SGRS: try candidates in probability order"})
    sgrs_fallback_in_history: bool = field(default=False, metadata={
        "help": "SGRS: fallback tokens enter the history (the release's choice)"})
    locore_beta: float = field(default=0.15, metadata={"help": "LocoRE: gamma = 1 + beta"})
    locore_window: int = field(default=5, metadata={"help": "LocoRE: w_s, most recent answer tokens boosted"})
    locore_layers: list[int] | None = field(default=None, metadata={"help": "LocoRE: layers (default: all)"})
    locore_literal: bool = field(default=False, metadata={
        "help": "LocoRE: multiply after the softmax without renormalising (literal Eq. 9)"})
    calibration: str | None = field(default=None, metadata={
        "help": "JSON from lvsal calibrate: SGRS's alpha, W and the target layers, where no option sets them"})
    detector: str | None = field(default=None, metadata={
        "help": "detector.json from lvsal fit-detector: every token gets its p_hallucinated column, and the "
                "guided decoding chooses with it"})
    guided_k: int = field(default=5, metadata={"help": "guided: top-K candidates scored by the detector"})
    guided_floor: float = field(default=0.2, metadata={
        "help": "guided: a candidate is eligible if its probability is >= floor x the most likely one's"})
    guided_when: str = field(default="mentions", metadata={
        "help": "guided: intervene at steps whose top candidate could start an object mention, or at every step",
        "choices": lambda: ["mentions", "every"]})


@dataclass
class CollectConfig(DecodingOptions):
    """Everything that defines a collection run (written into the manifest)."""

    model: str = field(default="organism", metadata={"help": "local folder, Hub id, or 'organism'"})
    data: str = field(default="synthetic", metadata={
        "help": "synthetic[:k=v,..], coco:DIR, pope:FILE, amber:DIR or a dataset folder"})
    out: str = field(default="traces", metadata={"help": "output dataset folder"})
    decoding: str = field(default="greedy", metadata={"help": "decoding strategy", "choices": _decodings})
    limit: int | None = field(default=None, metadata={"help": "at most N samples"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": f"answer length cap, the same for every method (default: the source protocol's, e.g. 512 for "
                f"coco, 128 for pope; else {DEFAULT_MAX_NEW_TOKENS})"})
    system_prompt: str | None = field(default=None, metadata={
        "help": "system message before each prompt: TEXT, or 'none' (default: the model's standard one, e.g. "
                "Vicuna's for LLaVA-1.5; none for the organism)"})
    seed: int = field(default=0, metadata={"help": "seed of sampling decodings"})
    resume: bool = field(default=False, metadata={"help": "continue a killed run in --out"})
    store_rows: bool = field(default=False, metadata={"help": "keep each token's layer-mean saliency row (float16)"})
    lookback_heads: bool = field(default=False, metadata={"help": "keep per-head Lookback-Lens ratios"})
    hidden_states: bool = field(default=False, metadata={
        "help": "keep each token's residual stream at its query row (float16, projected to --hidden-dim)"})
    hidden_dim: int = field(default=256, metadata={
        "help": "dimensions of the stored hidden states after a fixed random projection (0: no projection)"})
    hidden_layers: list[int] | None = field(default=None, metadata={
        "help": "decoder layers whose hidden states are kept (default: the Eq. 6 target layers)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 (default: cuda if available)"})
    dtype: str | None = field(default=None, metadata={"help": "float32, float16 or bfloat16"})
    layers: list[int] | None = field(default=None, metadata={"help": "traced layers (default: all)"})
    target_layers: list[int] | None = field(default=None, metadata={
        "help": "Eq. 6 layers (default: the calibration's, else floor(6L/32)..floor(8L/32))"})
    shard_size: int = field(default=32, metadata={"help": "samples per Parquet shard"})
    batch_size: str = field(default="1", metadata={
        "help": "answers traced together per step: N, or 'auto' (4 on CPU; on a GPU the largest that fits its "
                "free memory); every sample's rows equal its batch-1 rows"})
    revision: str | None = field(default=None, metadata={"help": "model revision on the Hub"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow the model repository's own code"})

    def run_identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the original."""
        d = asdict(self)
        for key in ("resume", "out", "device", "batch_size"):  # rows do not depend on them
            d.pop(key)
        return d


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

    Example:
        >>> with_calibration("--sgrs-alpha", 0.9, {"alpha": 0.3}, "alpha", 0.6)
        (0.9, "--sgrs-alpha 0.9 overrides the calibration's alpha 0.3")
        >>> with_calibration("--sgrs-alpha", None, {"alpha": 0.3}, "alpha", 0.6)
        (0.3, None)
    """
    if explicit is not None:
        calibrated = None if calibration is None else calibration.get(key)
        note = (f"{option} {explicit} overrides the calibration's {key} {calibrated}"
                if calibrated is not None and calibrated != explicit else None)
        return explicit, note
    if calibration is not None:
        return calibration[key], None
    return default, None


def sgrs_settings(options: DecodingOptions, calibration: dict[str, Any] | None) -> tuple[float, int, list[str]]:
    """SGRS's alpha and W for a run, with the notes of explicit options that overrode the calibration."""
    alpha, a = with_calibration("--sgrs-alpha", options.sgrs_alpha, calibration, "alpha", SGRS_ALPHA)
    window, w = with_calibration("--sgrs-window", options.sgrs_window, calibration, "window", SGRS_WINDOW)
    return float(alpha), int(window), [n for n in (a, w) if n]


__all__ = ["CollectConfig", "DEFAULT_MAX_NEW_TOKENS", "DecodingOptions", "SGRS_ALPHA", "SGRS_WINDOW",
           "load_calibration", "sgrs_settings", "with_calibration"]
