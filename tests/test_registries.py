"""Every registered model family is tested: it has a tiny builder, so the per-family tests
(parametrised over :data:`lvsal_data.testing.BUILDERS` in ``conftest.py``) run on it."""

from __future__ import annotations

import pytest

from lvsal_data.families import FAMILIES
from lvsal_data.testing import BUILDERS, TinyLVLM

#: Families registered without a tiny builder, each with its reason. Keep it empty where possible:
#: a family listed here is never checked against brute force.
NO_BUILDER: dict[str, str] = {}


@pytest.mark.parametrize("family", FAMILIES.names())
def test_every_family_has_a_tiny_builder(family: str) -> None:
    assert family in BUILDERS or family in NO_BUILDER, (
        f"family {family!r} has no tiny builder: add one to lvsal_data.testing.BUILDERS, or list it in "
        "NO_BUILDER with the reason")


@pytest.mark.parametrize("family", [f for f in FAMILIES.names() if f in BUILDERS])
def test_each_builder_makes_its_family(family: str, tiny_models: dict[str, TinyLVLM]) -> None:
    tiny = tiny_models[family]
    assert tiny.family == tiny.model.config.model_type == family


def test_allow_list_names_only_registered_families_without_builders() -> None:
    assert set(NO_BUILDER) <= set(FAMILIES.names()) - set(BUILDERS)
