"""Shared fixtures: seeds fixed, tiny models built once per session."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from lvsal_data.testing import BUILDERS, TinyLVLM

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, TinyLVLM]:
    return {name: build() for name, build in BUILDERS.items()}


@pytest.fixture(params=sorted(BUILDERS), scope="session")
def tiny(request: pytest.FixtureRequest, tiny_models: dict[str, TinyLVLM]) -> TinyLVLM:
    """Every tiny architecture of :data:`lvsal_data.testing.BUILDERS` in turn."""
    return tiny_models[request.param]


@pytest.fixture
def plain_mode() -> int:
    """The mode a plainly created file gets here (``0o666`` less the umask), read without
    asking the code under test."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
