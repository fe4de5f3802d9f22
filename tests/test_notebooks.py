"""Every notebook ships with its outputs (figures visible on a web view, nothing of the machine
that ran it) and still executes top to bottom; the shipped dataset's card is the template's
rendering."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
DATA = Path(__file__).parents[1] / "notebooks" / "data" / "organism-traces"


def test_there_are_three_notebooks() -> None:
    assert [p.stem for p in NOTEBOOKS] == ["01_saliency_anatomy", "02_detectors", "03_calibrate_and_verify"]


def _images(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_ships_with_its_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "ship notebooks executed (make notebooks)"
    assert len(_images(nb)) >= 2
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    text = path.read_text()
    for private in ("/tmp/", "/root", "/home/", str(Path(__file__).parents[1])):
        assert private not in text, private


@pytest.mark.slow  # a kernel per notebook, each loading the organism
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_shows_figures(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # re-execute from scratch: the shipped outputs must not be what is checked
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    assert len(_images(nb)) >= 2


def test_shipped_dataset_is_small_and_its_card_matches_the_template() -> None:
    from lvsal_data.hub import render_card
    from lvsal_data.store import open_traces

    size = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert size <= 5 * 2**20
    card = (Path(__file__).parents[1] / "data_cards" / "organism-traces.md").read_text()
    assert card == (DATA / "README.md").read_text()
    assert card == render_card(open_traces(DATA), repo_id="lvsal-data/organism-traces", license="apache-2.0",
                               limitations=open_traces(DATA).manifest.get("limitations", ""))
