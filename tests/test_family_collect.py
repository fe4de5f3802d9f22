"""``lvsal collect`` end to end on every family in the table: the tiny model and its real processor
saved with ``save_pretrained``, loaded by ``load_lvlm`` (without torchvision where the family's
processor allows it), traced with greedy / SGRS / LocoRE, written as valid Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from transformers import AutoConfig

from lvsal_data.cli import main
from lvsal_data.families import FAMILIES, self_attention_layers
from lvsal_data.prompts import CAPTION_PROMPT, VICUNA_SYSTEM_PROMPT
from lvsal_data.schema import SAMPLES, TOKENS
from lvsal_data.store import open_traces
from lvsal_data.tiny_processors import NEEDS_TORCHVISION, PROCESSORS, save_tiny

#: The words the tiny tokenizers know: the caption prompt, LLaVA's system prompt, a few objects.
WORDS = sorted(set((CAPTION_PROMPT + " " + VICUNA_SYSTEM_PROMPT).replace(".", " . ").replace(",", " , ").replace(
    "'", " ' ").split()) | {"dog", "cat", "car", "a", "on", "the"})
DECODINGS = ("greedy", "sgrs", "locore")
N_SAMPLES, MAX_NEW_TOKENS = 2, 4


def _torchvision() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _collect(folder: Path, out: Path, decoding: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    capsys.readouterr()  # what came before (save_pretrained's progress bars)
    code = main(["collect", "--model", str(folder), "--data", "synthetic:split=test,n=4", "--out", str(out),
                 "--decoding", decoding, "--limit", str(N_SAMPLES), "--max-new-tokens", str(MAX_NEW_TOKENS),
                 "--device", "cpu", "--threads", "2"])
    return code, capsys.readouterr().err


def test_every_family_has_a_processor_or_a_reason() -> None:
    """A family added to the table without a tiny processor would skip the end-to-end check."""
    missing = sorted(set(FAMILIES.names()) - set(PROCESSORS) - set(NEEDS_TORCHVISION))
    assert not missing, f"families without a tiny processor in lvsal_data.tiny_processors.PROCESSORS: {missing}"


@pytest.mark.parametrize("family", sorted(NEEDS_TORCHVISION))
def test_a_family_whose_processor_needs_torchvision_is_refused_in_one_line(
        family: str, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pixtral's and LFM2-VL's image processors exist only with torchvision: without it, one line that
    says so, before the model loads and before anything is written."""
    if _torchvision():
        pytest.skip(f"torchvision is installed: {NEEDS_TORCHVISION[family][0]} loads (no tiny one is built here)")
    monkeypatch.setenv("LVSAL_CACHE", str(cache))
    folder = save_tiny(family, tmp_path / "model", WORDS)
    code, err = _collect(folder, tmp_path / "out", "greedy", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "needs torchvision" in err, err
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(PROCESSORS))
def test_collect_end_to_end(family: str, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVSAL_CACHE", str(cache))
    folder = save_tiny(family, tmp_path / "model", WORDS)
    layers = self_attention_layers(AutoConfig.from_pretrained(folder))
    for decoding in DECODINGS:
        out = tmp_path / decoding
        code, err = _collect(folder, out, decoding, capsys)
        assert code == 0, err
        traces = open_traces(out)
        m = traces.manifest
        assert m["rows"]["samples"] == N_SAMPLES and m["layers"] == layers and set(m["target_layers"]) <= set(layers)
        for path in traces.paths("tokens"):
            assert pq.read_schema(path).remove_metadata() == TOKENS.remove_metadata()
        for path in traces.paths("samples"):
            assert pq.read_schema(path).remove_metadata() == SAMPLES.remove_metadata()
        tokens, samples = traces.pandas("tokens"), traces.pandas("samples")
        assert len(tokens) == m["rows"]["tokens"] == samples["n_tokens"].sum() > 0
        assert (samples["n_tokens"] <= MAX_NEW_TOKENS).all() and set(tokens["decoding"]) == {decoding}
        assert np.isfinite(tokens["saliency"]).all() and (tokens["saliency"] >= 0).all()
        assert all(len(v) == len(layers) for v in tokens["sal_last"])
        assert (tokens["len_image"] > 0).all() and (tokens["len_instruction"] > 0).all()
        if decoding == "sgrs":
            assert tokens["sgrs_tries"].notna().all()
        note = FAMILIES[family].card_note  # Llama 3.2 Vision's one-token image segment, in its dataset card
        assert note is None or note in (out / "README.md").read_text()



def test_layers_without_self_attention_are_refused_before_loading(tmp_path: Path, cache: Path,
                                                                 capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen3.5's layer 0 is linear attention: no saliency rows, so --layers 0 is one clear line."""
    monkeypatch.setenv("LVSAL_CACHE", str(cache))
    folder = save_tiny("qwen3_5", tmp_path / "model", WORDS)
    capsys.readouterr()
    code = main(["collect", "--model", str(folder), "--data", "synthetic:split=test,n=4", "--out", str(tmp_path / "o"),
                 "--layers", "0,1", "--device", "cpu", "--threads", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "layer(s) [0]" in err and "have no self-attention" in err and "1,3" in err, err
