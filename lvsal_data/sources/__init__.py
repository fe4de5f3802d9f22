"""Annotated sample sources, registered by name in :data:`SOURCES`: ``coco``, ``pope``,
``amber``, ``synthetic`` and ``hf`` (a local dataset folder). :func:`open_source` parses a
``--data`` spec."""

from . import amber, coco, hf, pope, synthetic  # noqa: F401  (registration)
from .base import (CAPTION_PROMPT, POPE_SUFFIX, SOURCES, ImageLoadError, Sample, Source, SourceError,
                   open_source, parse_spec)

__all__ = ["CAPTION_PROMPT", "POPE_SUFFIX", "SOURCES", "ImageLoadError", "Sample", "Source", "SourceError",
           "open_source", "parse_spec"]
