"""io: staged folders never leave a half-written file and give files a plain mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lvsal_data.io import staged_folder


def test_staged_folder_moves_files_in_with_a_plain_mode(tmp_path: Path, plain_mode: int) -> None:
    out = tmp_path / "weights"
    out.mkdir()
    (out / "README.md").write_text("card")  # files the writer does not produce stay
    with staged_folder(out) as staging:
        assert staging.parent == tmp_path and not any(staging.iterdir())
        (staging / "model.safetensors").write_bytes(b"new")
        os.chmod(staging / "model.safetensors", 0o600)  # as transformers writes it
    assert (out / "model.safetensors").read_bytes() == b"new"
    assert (out / "model.safetensors").stat().st_mode & 0o777 == plain_mode
    assert (out / "README.md").read_text() == "card"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]


def test_staged_folder_leaves_the_old_files_on_error(tmp_path: Path) -> None:
    out = tmp_path / "weights"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="killed"), staged_folder(out) as staging:
        (staging / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-save")
    assert (out / "model.safetensors").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]
