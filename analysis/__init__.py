"""Using trace datasets: metrics (CHAIR, POPE) with confidence intervals; detectors, calibration
and verification land with the analysis issue. This package reads what ``lvsal_data.store``
writes and never imports model code."""

from .metrics import CaptionResult, YesNoResult, chair, pope
from .stats import bootstrap, paired_difference

__all__ = ["CaptionResult", "YesNoResult", "bootstrap", "chair", "paired_difference", "pope"]
