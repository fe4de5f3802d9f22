"""Using trace datasets: hallucination detectors, SGRS calibration, comparison of decodings, the
paper's pattern and plots. This package reads what ``lvsal_data.store`` writes and never imports
torch or a model (collecting and the commands that do both live in ``lvsal_data``). The public
names load on first use, so ``import analysis`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it
_PUBLIC = {
    "calibrate": "analysis.calibration", "evaluate_rule": "analysis.calibration", "tradeoff": "analysis.calibration",
    "HallucinationDetector": "analysis.detectors", "cross_validate": "analysis.detectors",
    "load_detector": "analysis.detectors", "save_detector": "analysis.detectors", "score_traces": "analysis.detectors",
    "FEATURE_SETS": "analysis.features", "feature_matrix": "analysis.features", "load_tokens": "analysis.features",
    "label_difference": "analysis.pattern", "mention_scores": "analysis.pattern", "rate_by_decile": "analysis.pattern",
    "saliency_by_label": "analysis.pattern",
    "compare": "analysis.verification",
    "CaptionResult": "lvsal_data.metrics", "YesNoResult": "lvsal_data.metrics", "chair": "lvsal_data.metrics",
    "pope": "lvsal_data.metrics",
    "bootstrap": "lvsal_data.stats", "paired_difference": "lvsal_data.stats",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:
    from lvsal_data.metrics import CaptionResult, YesNoResult, chair, pope
    from lvsal_data.stats import bootstrap, paired_difference

    from .calibration import calibrate, evaluate_rule, tradeoff
    from .detectors import HallucinationDetector, cross_validate, load_detector, save_detector, score_traces
    from .features import FEATURE_SETS, feature_matrix, load_tokens
    from .pattern import label_difference, mention_scores, rate_by_decile, saliency_by_label
    from .verification import compare
