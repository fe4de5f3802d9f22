"""Annotated sample sources, registered by name in :data:`lvsal_data.registry.SOURCES` (lazily,
so a source's module is imported when a spec names it): ``coco``, ``pope``, ``amber``,
``synthetic`` and ``hf`` (a local dataset folder). :func:`open_source` parses a ``--data`` spec."""

from ..registry import SOURCES
from .base import CAPTION_PROMPT, POPE_SUFFIX, ImageLoadError, Sample, Source, SourceError, open_source, parse_spec

__all__ = ["CAPTION_PROMPT", "POPE_SUFFIX", "SOURCES", "ImageLoadError", "Sample", "Source", "SourceError",
           "open_source", "parse_spec"]
