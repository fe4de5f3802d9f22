"""Decoding strategies, registered by name in :data:`DECODINGS`."""

from .base import DECODINGS, Choice, Decoder, Greedy, Sample

__all__ = ["DECODINGS", "Choice", "Decoder", "Greedy", "Sample"]
