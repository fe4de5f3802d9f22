"""Every notebook executes top to bottom and shows its figures; the shipped dataset's card is the
template's rendering."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
DATA = Path(__file__).parents[1] / "notebooks" / "data" / "organism-traces"


def test_there_are_three_notebooks() -> None:
    assert [p.stem for p in NOTEBOOKS] == ["01_saliency_anatomy", "02_detectors", "03_calibrate_and_verify"]


@pytest.mark.slow  # a kernel per notebook, each loading the organism
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_shows_figures(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    stripped = all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert stripped, "commit notebooks with outputs stripped"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2


def test_shipped_dataset_is_small_and_its_card_matches_the_template() -> None:
    from lvsal_data.hub import render_card
    from lvsal_data.store import open_traces

    size = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert size <= 5 * 2**20
    card = (Path(__file__).parents[1] / "data_cards" / "organism-traces.md").read_text()
    assert card == (DATA / "README.md").read_text()
    assert card == render_card(open_traces(DATA), repo_id="lvsal-data/organism-traces", license="apache-2.0",
                               limitations=open_traces(DATA).manifest.get("limitations", ""))
