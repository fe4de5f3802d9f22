"""The organism: a small LLaVA trained on a synthetic annotated world, shipped with the package.

``load_lvlm("organism")`` loads it; ``python -m lvsal_data.organism.train`` reproduces it;
``python -m lvsal_data.organism.evaluate`` measures it and writes its model card.
"""

from __future__ import annotations

from pathlib import Path


def weights_dir() -> Path:
    """Folder of the shipped weights, processor and model card."""
    return Path(__file__).resolve().parent / "weights"
