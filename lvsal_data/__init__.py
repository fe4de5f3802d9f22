"""lvsal-data: gradient-aware saliency traces of LVLM generations, labelled for hallucination.

The public names a user needs; everything else is private to its module. They load on first
use (PEP 562), so ``import lvsal_data.store`` or ``import analysis`` does not import torch, and
the ``lvsal`` command starts quickly.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("lvsal-data")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

#: public name -> the module that defines it
_PUBLIC = {
    "LVLM": "models", "Prepared": "models", "PreparedBatch": "models", "Spans": "models", "find_spans": "models",
    "load_lvlm": "models",
    "SaliencyEngine": "saliency", "saliency_rows": "saliency",
    "default_target_layers": "layers",
    "Trace": "tracing", "trace_batch": "tracing", "trace_generate": "tracing",
    "Mention": "labels", "find_mentions": "labels",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from .labels import Mention, find_mentions
    from .layers import default_target_layers
    from .models import LVLM, Prepared, PreparedBatch, Spans, find_spans, load_lvlm
    from .saliency import SaliencyEngine, saliency_rows
    from .tracing import Trace, trace_batch, trace_generate
