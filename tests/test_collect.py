"""The collector on the shipped organism: schema round trip, resume after a real kill,
torchrun ranks, publish. Every run is compared with an uninterrupted single-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lvsal_data.collect import collect
from lvsal_data.config import CollectConfig
from lvsal_data.hub import repo_folder
from lvsal_data.schema import SAMPLES, SCHEMA_VERSION, TOKENS, tokens_schema
from lvsal_data.store import StoreError, open_traces

DATA = "synthetic:split=test,n=6"
ARGS = ["--data", DATA, "--max-new-tokens", "10", "--shard-size", "2"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lvsal_data.cli", "collect", *args]


def _rows(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    t = open_traces(root)
    tokens = t.pandas("tokens").sort_values(["sample_id", "position"]).reset_index(drop=True)
    samples = t.pandas("samples").sort_values("sample_id").reset_index(drop=True)
    return tokens, samples


def _assert_same(a: Path, b: Path) -> None:
    ta, sa = _rows(a)
    tb, sb = _rows(b)
    pd.testing.assert_frame_equal(sa, sb)
    pd.testing.assert_frame_equal(ta, tb)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "LVSAL_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """An uninterrupted single-process run (the CLI, as a user runs it)."""
    out = tmp_path_factory.mktemp("ref") / "traces"
    done = subprocess.run(_cli(*ARGS, "--out", str(out)), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"trace dataset: {out}" in done.stdout and "bytes/token" in done.stdout
    return out


def test_schema_round_trip(reference: Path) -> None:
    t = open_traces(reference)
    for p in t.paths("tokens"):
        assert pq.read_schema(p).remove_metadata() == TOKENS.remove_metadata()
    for p in t.paths("samples"):
        assert pq.read_schema(p).remove_metadata() == SAMPLES.remove_metadata()
    tokens, samples = _rows(reference)
    assert len(samples) == 6 and t.manifest["rows"] == {"tokens": len(tokens), "samples": 6}
    n_layers = t.manifest["model"]["num_layers"]
    assert all(len(v) == n_layers for v in tokens["sal_image"])
    assert set(tokens["label"]) <= {"correct", "hallucinated", "none"}
    # every sample's tokens are contiguous positions 0..n-1 and match n_tokens
    counts = tokens.groupby("sample_id")["position"].agg(["count", "max"])
    assert (counts["count"] == counts["max"] + 1).all()
    assert dict(zip(samples.sample_id, samples.n_tokens)) == counts["count"].to_dict()
    # the decoded pieces rebuild the answer
    for sid, answer in zip(samples.sample_id, samples.answer):
        assert "".join(tokens[tokens.sample_id == sid]["token"]) == answer
    # mention starts carry their category; labels agree with the ground truth
    objects = dict(zip(samples.sample_id, samples.objects))
    for r in tokens[tokens.mention_start].itertuples():
        assert r.label == ("correct" if r.object in objects[r.sample_id] else "hallucinated")
    m = t.manifest
    assert m["schema_version"] == SCHEMA_VERSION and m["versions"]["transformers"]
    assert m["source"]["name"] == "synthetic"
    assert all(len(e["sha256"]) == 64 for e in m["shards"]["tokens"])


def test_datasets_loads_both_configs(reference: Path) -> None:
    import datasets

    tokens = datasets.load_dataset(str(reference), "tokens", split="train")
    samples = datasets.load_dataset(str(reference), "samples", split="train")
    assert samples.num_rows == 6 and tokens.num_rows == open_traces(reference).manifest["rows"]["tokens"]


def test_non_empty_output_is_refused(reference: Path, env: dict[str, str]) -> None:
    done = subprocess.run(_cli(*ARGS, "--out", str(reference)), env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"lvsal collect: error: output folder {reference} is not empty; pass --resume to continue the run "
        "there, or choose another --out"]


def test_resume_with_other_settings_is_refused(reference: Path) -> None:
    cfg = CollectConfig(data=DATA, out=str(reference), max_new_tokens=11, shard_size=2, resume=True)
    with pytest.raises(StoreError, match="settings differ .* max_new_tokens"):
        collect(cfg, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_shards", [0, 1])
def test_resume_after_sigkill_equals_uninterrupted(kill_after_shards: int, reference: Path, tmp_path: Path,
                                                   env: dict[str, str]) -> None:
    out = tmp_path / "traces"
    proc = subprocess.Popen(_cli(*ARGS, "--out", str(out)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    registry = out / ".lvsal" / "rank-0-of-1.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        n = len(json.loads(registry.read_text())["shards"]) if registry.exists() else 0
        if n >= kill_after_shards and (kill_after_shards or (out / ".lvsal" / "config.json").exists()):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    with pytest.raises(StoreError, match="--resume"):
        open_traces(out)
    done = subprocess.run(_cli(*ARGS, "--out", str(out), "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_same(out, reference)


@pytest.mark.slow
def test_torchrun_two_ranks_equals_single_process(reference: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """Two ranks, each tracing its samples in batches, write the rows of one batch-1 process."""
    out = tmp_path / "traces"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "lvsal_data.cli", "collect", *ARGS, "--batch-size", "2", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = open_traces(out).manifest
    assert {Path(e["path"]).name[:11] for e in manifest["shards"]["tokens"]} == {"r000-of-002", "r001-of-002"}
    _assert_close(out, reference)


def _assert_close(a: Path, b: Path, atol: float = 1e-5) -> None:
    """Same samples and tokens; float columns (and lists of floats) equal to ``atol``."""
    for x, y in zip(_rows(a), _rows(b)):
        assert list(x.columns) == list(y.columns) and len(x) == len(y)
        for col in x.columns:
            floats = pd.api.types.is_float_dtype(x[col]) or all(
                hasattr(v, "dtype") and v.dtype.kind == "f" and v.size for v in x[col])
            if floats:
                np.testing.assert_allclose(np.stack(x[col].map(np.asarray)).astype(float),
                                           np.stack(y[col].map(np.asarray)).astype(float), atol=atol, rtol=0,
                                           err_msg=col)
            else:
                pd.testing.assert_series_equal(x[col], y[col], obj=col)


@pytest.mark.parametrize("decoding", ["greedy", "sgrs"])
def test_batched_run_equals_batch_one(decoding: str, tmp_path: Path, env: dict[str, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """--batch-size 4 (prompts of different lengths, left-padded, sorted by length inside a
    shard, finished answers leaving the batch) writes every sample's batch-1 rows."""
    monkeypatch.setenv("LVSAL_CACHE", env["LVSAL_CACHE"])
    runs = {}
    for size in ("1", "4"):
        out = tmp_path / f"b{size}"
        collect(CollectConfig(data=DATA, out=str(out), max_new_tokens=10, shard_size=5, decoding=decoding,
                              batch_size=size, seed=3), progress=False)
        runs[size] = out
    _assert_close(runs["4"], runs["1"])


def test_skipped_images_are_recorded(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVSAL_CACHE", env["LVSAL_CACHE"])
    from lvsal_data.sources import open_source

    first = next(iter(open_source(DATA)))
    original = first.image_path.read_bytes()
    first.image_path.write_bytes(b"broken")
    try:
        summary = collect(CollectConfig(data=DATA, out=str(tmp_path / "t"), max_new_tokens=3, limit=2), progress=False)
    finally:
        first.image_path.write_bytes(original)
    skipped = summary.manifest["skipped"]
    assert [s["sample_id"] for s in skipped] == [first.id] and "corrupt image" in skipped[0]["reason"]
    assert summary.manifest["rows"]["samples"] == 1


def test_optional_columns(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVSAL_CACHE", env["LVSAL_CACHE"])
    out = tmp_path / "t"
    collect(CollectConfig(data=DATA, out=str(out), max_new_tokens=4, limit=2, store_rows=True,
                          lookback_heads=True), progress=False)
    t = open_traces(out)
    assert pq.read_schema(t.paths("tokens")[0]).remove_metadata() == tokens_schema(True, True).remove_metadata()
    tokens, samples = _rows(out)
    heads = t.manifest["model"]["num_heads"]
    row = tokens.iloc[1]
    assert np.asarray(row["lookback"].tolist()).shape == (t.manifest["model"]["num_layers"], heads)
    span = samples.iloc[0]
    n_text = span.span_image[0] + (span.span_instruction[1] - span.span_image[1]) + 1  # query row 1 of the answer
    assert len(tokens[(tokens.sample_id == span.sample_id) & (tokens.position == 1)].iloc[0]["rows"]) == n_text


def test_published_folder_loads_with_datasets(reference: Path, tmp_path: Path) -> None:
    import datasets

    folder = repo_folder(reference, tmp_path / "repo", repo_id="someone/organism-traces")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "data", "manifest.json"]
    card = (folder / "README.md").read_text()
    assert "config_name: tokens" in card and "someone/organism-traces" in card and "CHAIR_S" in card
    assert datasets.load_dataset(str(folder), "samples", split="train").num_rows == 6
    assert datasets.load_dataset(str(folder), "tokens", split="train").num_rows > 0


def test_publish_without_token_is_one_clear_line(reference: Path, env: dict[str, str]) -> None:
    clean = {k: v for k, v in env.items() if k != "HF_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "lvsal_data.cli", "publish", "--traces", str(reference),
                           "--repo-id", "someone/x"], env=clean, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "HF_TOKEN" in done.stderr


def test_explicit_options_win_over_the_calibration_and_say_so(tmp_path: Path, env: dict[str, str],
                                                               monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Regression: --target-layers / --sgrs-alpha given explicitly were silently replaced by the
    calibration file's values. An explicit option wins, with one line saying so, in the manifest too."""
    monkeypatch.setenv("LVSAL_CACHE", env["LVSAL_CACHE"])
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"alpha": 0.3, "window": 2, "target_layers": [0, 1]}))
    base = dict(data=DATA, max_new_tokens=3, limit=1, decoding="sgrs", calibration=str(cal))
    calibrated = collect(CollectConfig(out=str(tmp_path / "a"), **base), progress=False).manifest
    assert calibrated["decoding"]["params"]["alpha"] == 0.3 and calibrated["decoding"]["params"]["window"] == 2
    assert calibrated["target_layers"] == [0, 1] and calibrated["settings_notes"] == []
    with caplog.at_level("WARNING", logger="lvsal_data.collect"):
        explicit = collect(CollectConfig(out=str(tmp_path / "b"), sgrs_alpha=0.9, target_layers=[2, 3], **base),
                           progress=False).manifest
    assert explicit["decoding"]["params"]["alpha"] == 0.9 and explicit["decoding"]["params"]["window"] == 2
    assert explicit["target_layers"] == [2, 3]
    notes = ["--sgrs-alpha 0.9 overrides the calibration's alpha 0.3",
             "--target-layers [2, 3] overrides the calibration's target_layers [0, 1]"]
    assert explicit["settings_notes"] == notes and [r.getMessage() for r in caplog.records] == notes


def test_the_manifest_and_card_say_the_protocol(reference: Path, tmp_path: Path, env: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --max-new-tokens the source protocol's cap applies; the manifest and card record it,
    the system prompt and the rendered chat layout, so the protocol can be read off the dataset."""
    monkeypatch.setenv("LVSAL_CACHE", env["LVSAL_CACHE"])
    m = collect(CollectConfig(data=DATA, out=str(tmp_path / "t"), limit=1), progress=False).manifest
    assert m["max_new_tokens"] == m["protocol"]["max_new_tokens"] == 64
    assert m["protocol"]["system_prompt"] is None
    assert m["protocol"]["chat_template_example"] == "USER: <image>\n{prompt} ASSISTANT:"
    card = (tmp_path / "t" / "README.md").read_text()
    assert "**Protocol:** organism captioning" in card and "**System prompt:** none" in card
    assert open_traces(reference).manifest["max_new_tokens"] == 10  # an explicit cap wins
    with_system = collect(CollectConfig(data=DATA, out=str(tmp_path / "s"), limit=1, max_new_tokens=2,
                                        system_prompt="Be precise."), progress=False).manifest
    assert with_system["protocol"]["system_prompt"] == "Be precise."
    assert open_traces(tmp_path / "s").pandas("samples")["span_system"][0][1] > 0


@pytest.mark.parametrize("value", ["abc", "0"])
def test_bad_batch_size_is_one_line_and_writes_nothing(value: str, tmp_path: Path, capsys) -> None:
    from lvsal_data.cli import main

    out = tmp_path / "t"
    assert main(["collect", "--data", DATA, "--batch-size", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch-size" in err and "Traceback" not in err
    assert not out.exists()


def test_batches_sort_by_length_preparing_one_prompt_per_image_size_and_text() -> None:
    """The collector sorts a shard by prompt length before batching; a length is measured once
    per (image size, prompt text), the only things it depends on, not once per sample."""
    from types import SimpleNamespace

    import torch
    from PIL import Image

    from lvsal_data.collect import _batches
    from lvsal_data.sources import Sample

    calls = []

    def prepare(image, prompt, system_prompt=None):
        calls.append((image.size, prompt))
        n = image.size[0] // 8 + len(prompt.split())
        return SimpleNamespace(inputs={"input_ids": torch.zeros(1, n, dtype=torch.long)})

    sizes = [(64, 64), (32, 32), (64, 64), (32, 32), (64, 64)]
    prompts = ["describe it", "describe it", "describe it in detail please", "describe it", "describe it"]
    loaded = [(i, Sample(id=str(i), image_id=str(i), prompt=p, task="caption", objects=(), source="test"),
               Image.new("RGB", size)) for i, (size, p) in enumerate(zip(sizes, prompts))]
    batches = list(_batches(SimpleNamespace(prepare=prepare), SimpleNamespace(system_prompt=None), loaded, 2))
    assert sorted(calls) == sorted({(s, p) for s, p in zip(sizes, prompts)})  # 3 distinct, 5 samples
    order = [i for batch in batches for i, _, _ in batch]
    lengths = [sizes[i][0] // 8 + len(prompts[i].split()) for i in order]
    assert sorted(order) == list(range(5)) and lengths == sorted(lengths) and [len(b) for b in batches] == [2, 2, 1]
