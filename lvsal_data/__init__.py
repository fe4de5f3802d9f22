"""lvsal-data: gradient-aware saliency traces of LVLM generations, labelled for hallucination.

The public names a user needs; everything else is private to its module.
"""

from importlib.metadata import PackageNotFoundError, version

from .labels import Mention, find_mentions
from .models import LVLM, Prepared, Spans, find_spans, load_lvlm
from .saliency import SaliencyEngine, default_target_layers, saliency_rows
from .tracing import Trace, trace_generate

try:
    __version__ = version("lvsal-data")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "LVLM",
    "Mention",
    "Prepared",
    "SaliencyEngine",
    "Spans",
    "Trace",
    "__version__",
    "default_target_layers",
    "find_mentions",
    "find_spans",
    "load_lvlm",
    "saliency_rows",
    "trace_generate",
]
