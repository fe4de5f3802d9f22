"""Using trace datasets: metrics with confidence intervals, hallucination detectors, SGRS
calibration, verification of the fixes, the paper's pattern and plots. This package reads what
``lvsal_data.store`` writes; only ``verify`` runs a model (through the collector)."""

from .calibration import calibrate, evaluate_rule, tradeoff
from .detectors import HallucinationDetector, cross_validate, load_detector, save_detector
from .features import FEATURE_SETS, feature_matrix, load_tokens
from .metrics import CaptionResult, YesNoResult, chair, pope
from .pattern import label_difference, mention_scores, rate_by_decile, saliency_by_label
from .stats import bootstrap, paired_difference
from .verification import compare, verify
from .workflows import calibrate_to_file, fit_detectors, score_traces

__all__ = [
    "FEATURE_SETS", "CaptionResult", "HallucinationDetector", "YesNoResult", "bootstrap", "calibrate",
    "calibrate_to_file", "chair", "compare", "cross_validate", "evaluate_rule", "feature_matrix", "fit_detectors", "label_difference",
    "load_detector", "load_tokens", "mention_scores", "paired_difference", "pope", "rate_by_decile",
    "saliency_by_label", "save_detector", "score_traces", "tradeoff", "verify",
]
