"""scikit-learn's own estimator checks, run on every detector model: the contract that makes
``clone``, ``Pipeline`` and ``GridSearchCV`` work."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from analysis.detectors import MODELS, HallucinationDetector

# max_iter=10: ten boosting rounds already fit the checks' toy data, in a fraction of the time
DETECTORS = [HallucinationDetector(model="logistic"), HallucinationDetector(model="boosting", max_iter=10)]


@parametrize_with_checks(DETECTORS)
def test_sklearn_estimator_checks(estimator: HallucinationDetector, check: Callable) -> None:
    check(estimator)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples"])
def test_not_fitted_error_before_fit(model: str, method: str) -> None:
    with pytest.raises(NotFittedError):
        getattr(HallucinationDetector(model=model), method)([[0.0, 1.0]])


def test_binary_only_tags() -> None:
    tags = HallucinationDetector().__sklearn_tags__()
    assert tags.estimator_type == "classifier" and tags.classifier_tags.multi_class is False
