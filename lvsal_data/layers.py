"""Which layers a run traces and scores (no torch: the analysis layer uses it too)."""

from __future__ import annotations

from .errors import InputError


def default_target_layers(num_layers: int) -> list[int]:
    """The paper's middle band, scaled: layers floor(6L/32) .. floor(8L/32) inclusive.

    For LLaVA-1.5-7B (L=32) this is the release's 6, 7, 8.

    Example:
        >>> default_target_layers(32)
        [6, 7, 8]
        >>> default_target_layers(4)
        [0, 1]
    """
    if num_layers < 1:
        raise InputError(f"num_layers must be >= 1, got {num_layers}")
    return list(range((6 * num_layers) // 32, (8 * num_layers) // 32 + 1))


__all__ = ["default_target_layers"]
