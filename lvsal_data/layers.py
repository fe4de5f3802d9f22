"""Which layers a run traces and scores (no torch: the analysis layer uses it too)."""

from __future__ import annotations

from typing import Sequence

from .errors import InputError


def default_target_layers(num_layers: int, available: Sequence[int] | None = None) -> list[int]:
    """The paper's middle band, scaled: layers floor(6L/32) .. floor(8L/32) inclusive.

    For LLaVA-1.5-7B (L=32) this is the release's 6, 7, 8. With ``available`` (the layers with
    self-attention of a hybrid model) the band keeps its width, taken from those layers, nearest
    to the band first.

    Example:
        >>> default_target_layers(32)
        [6, 7, 8]
        >>> default_target_layers(4)
        [0, 1]
        >>> default_target_layers(24, available=[3, 7, 11, 15, 19, 23])  # every 4th layer has attention
        [3, 7, 11]
    """
    if num_layers < 1:
        raise InputError(f"num_layers must be >= 1, got {num_layers}")
    band = list(range((6 * num_layers) // 32, (8 * num_layers) // 32 + 1))
    if available is None or set(band) <= set(available):
        return band
    if not available:
        raise InputError("no layer with self-attention to take the target layers from")
    middle = (band[0] + band[-1]) / 2
    return sorted(sorted(available, key=lambda l: (abs(l - middle), l))[: len(band)])


__all__ = ["default_target_layers"]
