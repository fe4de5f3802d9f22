"""A saved hallucination detector, scored without scikit-learn or pickle.

``lvsal fit-detector`` saves a fitted logistic detector as JSON (:data:`FORMAT`): the feature set,
the feature names, the standard scaler's mean and scale, and the logistic coefficients. This
module reads that file and scores token rows with the same arithmetic scikit-learn's pipeline
runs (``(x - mean) / scale``, then ``expit(x @ coef + intercept)``), so the collector (online
``p_hallucinated``) and the guided decoding can use a detector without the analysis layer; the
tests check it against the fitted estimator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError
from .features import FEATURE_SETS, check_available
from .io import read_json
from .typing import FeatureMatrix, TokenArray

FORMAT = "lvsal-detector/1"


@dataclass
class LinearDetector:
    """A logistic detector read from its JSON file.

    Attributes:
        feature_set: The registered feature set it was fitted on.
        feature_names: Its features, in order (a dataset giving others is refused).
        mean, scale, coef: ``(n_features,)`` scaler and logistic weights; ``intercept`` a float.
        path: The file it came from (for messages).
        meta: What the file records about its fit (traces, model, layers, CV figures).
    """

    feature_set: str
    feature_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> "LinearDetector":
        """Read a detector file written by ``lvsal fit-detector`` (or ``analysis.save_detector``).

        Raises:
            InputError: The file is no lvsal detector, or its arrays disagree in length.
        """
        doc = read_json(Path(path), what="detector file")
        if doc.get("format") != FORMAT:
            raise InputError(f"{path} is not an lvsal detector (format {doc.get('format')!r}, expected {FORMAT!r})")
        names = list(doc["feature_names"])
        coef = np.asarray(doc["logistic"]["coef"], dtype=np.float64).reshape(-1)
        mean, scale = (np.asarray(doc["scaler"][k], dtype=np.float64) for k in ("mean", "scale"))
        if not len(names) == len(coef) == len(mean) == len(scale):
            raise InputError(f"{path}: {len(names)} feature names but {len(coef)} coefficients, {len(mean)} means "
                             f"and {len(scale)} scales")
        return cls(doc["feature_set"], names, mean, scale, coef, float(np.reshape(doc["logistic"]["intercept"], -1)[0]),
                   str(path), doc.get("meta", {}))

    def features(self, rows: pd.DataFrame, where: str = "these rows") -> FeatureMatrix:
        """The detector's feature matrix of token ``rows`` (tokens-table columns).

        Raises:
            InputError: The rows give other features than the detector was fitted on (other
                traced layers, no ``--lookback-heads``, another ``--hidden-dim``).
        """
        check_available(rows.columns, self.feature_set, where)
        X, names = FEATURE_SETS[self.feature_set](rows)
        if names != self.feature_names:
            raise InputError(f"{where} give features that differ from those of the detector {self.path} "
                             f"({len(names)} vs {len(self.feature_names)}; first difference "
                             f"{_first_difference(names, self.feature_names)}): collect with the layers and "
                             "options of the traces it was fitted on")
        return X

    def reads(self, column: str) -> bool:
        """Whether the detector reads the optional list column ``column`` (``lookback``, ``hidden``):
        whether any of its features is one of that column's entries."""
        return any(n.startswith(f"{column}[") for n in self.feature_names)

    def score(self, X: FeatureMatrix) -> TokenArray:
        """Probability of the hallucinated class of each row of ``X``."""
        z = ((np.asarray(X, dtype=np.float64) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def score_rows(self, rows: pd.DataFrame, where: str = "these rows") -> TokenArray:
        """:meth:`score` of :meth:`features`."""
        return self.score(self.features(rows, where))


def _first_difference(a: list[str], b: list[str]) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"{x!r} vs {y!r}"
    return f"{len(a)} vs {len(b)} features"


__all__ = ["FORMAT", "LinearDetector"]
