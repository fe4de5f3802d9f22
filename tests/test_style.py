"""The code keeps ruff's line-length rule (120) and has no undefined or shadowed names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ruff_line_length_and_undefined_names() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "E501,F821,F811", "--no-cache",
                           "lvsal_data", "analysis", "benchmarks", "tests"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
