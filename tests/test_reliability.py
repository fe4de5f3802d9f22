"""Issue 19: every fault a new user can cause ends in one clear line (exit 2, naming the file or
option, no traceback), in a fix that is not a dead end, or in a loud refusal; nothing is lost
silently. Each test drives the command line in-process, as a user meets it."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest

from lvsal_data.cli import main

TINY = ["--model", "organism", "--max-new-tokens", "4"]
DATA = "synthetic:split=test,n=4"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVSAL_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """4 samples in 2 shards, collected once; tests damage copies of it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LVSAL_CACHE", str(cache))
    out = tmp_path_factory.mktemp("ref") / "traces"
    try:
        assert main(["collect", *TINY, "--data", DATA, "--shard-size", "2", "--out", str(out)]) == 0
    finally:
        mp.undo()
    return out


@pytest.fixture
def copy(traces: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(traces, dest)
    return dest


def one_line_error(capsys: pytest.CaptureFixture[str], rc: int, *names: str) -> str:
    """Exit 2, exactly one error line, no traceback, and the line names each of ``names``."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert rc == 2, err
    lines = [l for l in err.splitlines() if "error:" in l]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def shard(root: Path, table: str = "tokens", k: int = 0) -> Path:
    return sorted((root / "data" / table).glob("*.parquet"))[k]


# -- 1. verdicts ------------------------------------------------------------------------------------

def test_verdict_on_nan_is_undefined_and_yes_ratio_has_no_better() -> None:
    from analysis.verification import verdict

    nan = {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    assert verdict(nan, "chair_s").startswith("undefined")
    up = {"value": 0.625, "ci_low": 0.5, "ci_high": 0.7}
    assert "better" not in verdict(up, "pope_yes_ratio") and "worse" not in verdict(up, "pope_yes_ratio")
    assert verdict(up, "chair_s") == "significantly worse" and verdict(up, "pope_f1") == "significantly better"


# -- 2. silent loss: negative limits, empty runs ------------------------------------------------------

def test_negative_limit_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t"
    rc = main(["collect", *TINY, "--data", "synthetic:split=test,n=3", "--limit", "-1", "--out", str(out)])
    one_line_error(capsys, rc, "--limit", "-1")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("spec", ["synthetic:split=test,n=-3", "synthetic:split=test,n=abc"])
def test_bad_synthetic_n_is_an_error(spec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["collect", *TINY, "--data", spec, "--out", str(tmp_path / "t")])
    one_line_error(capsys, rc, "n=")


def test_a_run_that_collects_nothing_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t"
    rc = main(["collect", *TINY, "--data", "synthetic:split=test,n=3", "--limit", "0", "--out", str(out)])
    one_line_error(capsys, rc, "no samples")
    assert not out.exists() or not any(out.iterdir())


# -- 3. checksums on read ------------------------------------------------------------------------------

def _swap_shard(root: Path) -> Path:
    """Overwrite shard 0 with shard 1: a valid Parquet file, not the one the manifest recorded."""
    target = shard(root, "tokens", 0)
    shutil.copy(shard(root, "tokens", 1), target)
    return target


@pytest.mark.parametrize("command", ["fit-detector", "calibrate", "publish"])
def test_a_replaced_shard_fails_its_checksum(command: str, copy: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    target = _swap_shard(copy)
    args = {"fit-detector": ["--traces", str(copy), "--out", str(tmp_path / "o")],
            "calibrate": ["--traces", str(copy), "--out", str(tmp_path / "c.json")],
            "publish": ["--traces", str(copy), "--repo-id", "u/x", "--folder", str(tmp_path / "p")]}[command]
    one_line_error(capsys, main([command, *args]), target.name, "checksum")


@pytest.mark.parametrize("command", ["fit-detector", "calibrate", "publish"])
def test_a_truncated_shard_is_one_line(command: str, copy: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = shard(copy, "tokens", 0)
    target.write_bytes(target.read_bytes()[:100])
    args = {"fit-detector": ["--traces", str(copy), "--out", str(tmp_path / "o")],
            "calibrate": ["--traces", str(copy), "--out", str(tmp_path / "c.json")],
            "publish": ["--traces", str(copy), "--repo-id", "u/x", "--folder", str(tmp_path / "p")]}[command]
    one_line_error(capsys, main([command, *args]), target.name)


def test_a_manifest_with_the_wrong_keys_is_one_line(copy: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (copy / "manifest.json").write_text(json.dumps({"hello": 1}))
    rc = main(["fit-detector", "--traces", str(copy), "--out", str(tmp_path / "o")])
    one_line_error(capsys, rc, "manifest.json")


# -- 4. too few samples for detectors -------------------------------------------------------------------

def test_fit_detector_on_too_few_samples_is_an_error(traces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """One hallucinated and one correct mention start (the issue's 2-sample run): no detector,
    no NaN report, one line."""
    import numpy as np

    monkeypatch.setattr("analysis.features.load_tokens",
                        lambda traces: SimpleNamespace(y=np.array([1, 0]), groups=np.array(["1", "2"])))
    out = tmp_path / "det"
    rc = main(["fit-detector", "--traces", str(traces), "--out", str(out)])
    one_line_error(capsys, rc, str(traces), "1 hallucinated and 1 correct")
    assert not out.exists()


def test_report_json_is_valid_json_with_nan(tmp_path: Path) -> None:
    from lvsal_data.io import write_json

    write_json(tmp_path / "r.json", {"auroc": {"value": math.nan}})
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == {
        "auroc": {"value": None}}


# -- 5. resume re-collects a missing or corrupt shard ------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_resume_recollects_a_damaged_shard(damage: str, traces: Path, copy: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    target = shard(copy, "tokens", 1)
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:50])
    else:
        target.unlink()
    (copy / "manifest.json").unlink()
    argv = ["collect", *TINY, "--data", DATA, "--shard-size", "2", "--out", str(copy), "--resume"]
    assert main(argv) == 0
    assert f"shard {target} is missing or fails its checksum: collecting it again" in caplog.text
    for table in ("tokens", "samples"):
        for a, b in zip(sorted((traces / "data" / table).glob("*")), sorted((copy / "data" / table).glob("*"))):
            pd.testing.assert_frame_equal(pq.read_table(a).to_pandas(), pq.read_table(b).to_pandas())


def test_resume_with_a_corrupt_config_is_one_line(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (copy / ".lvsal" / "config.json").write_text("{not json")
    argv = ["collect", *TINY, "--data", DATA, "--shard-size", "2", "--out", str(copy), "--resume"]
    one_line_error(capsys, main(argv), "config.json")


def test_resume_with_a_corrupt_registry_recollects(traces: Path, copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = next((copy / ".lvsal").glob("rank-*.json"))
    registry.write_text("{trunc")
    argv = ["collect", *TINY, "--data", DATA, "--shard-size", "2", "--out", str(copy), "--resume"]
    assert main(argv) == 0
    assert f"state file {registry} is corrupt" in caplog.text
    assert json.loads(registry.read_text())["shards"].keys() == {"0", "1"}


# -- 6. options are checked before anything is written ---------------------------------------------------

@pytest.mark.parametrize("option", [["--layers", "0,99"], ["--target-layers", "7"], ["--locore-layers", "9"]])
def test_bad_layers_write_nothing(option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t"
    rc = main(["collect", *TINY, "--data", DATA, *option, "--out", str(out)])
    one_line_error(capsys, rc, option[0])
    assert not out.exists() or not any(out.iterdir())


# -- 7. publish stages and renames --------------------------------------------------------------------------

def test_a_failed_publish_leaves_nothing_behind(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard(copy, "samples", 1).unlink()
    folder = tmp_path / "repo"
    rc = main(["publish", "--traces", str(copy), "--repo-id", "u/x", "--folder", str(folder)])
    one_line_error(capsys, rc)
    assert not folder.exists() and not list(tmp_path.glob(".repo*"))


def test_publish_redacts_local_paths(traces: Path, tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    assert main(["publish", "--traces", str(traces), "--repo-id", "u/x", "--folder", str(folder)]) == 0
    text = (folder / "manifest.json").read_text() + (folder / "README.md").read_text()
    for private in (str(Path.home()), str(traces.parent), str(Path(__file__).parents[1]), sys.prefix):
        assert private not in text, private


# -- 8. a second demo ---------------------------------------------------------------------------------

def test_demo_refusal_says_how_to_pick_another_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("")
    one_line_error(capsys, main(["demo", "--out", str(tmp_path / "d")]), "--out", "OUT=")


def test_makefile_demo_takes_out() -> None:
    make = (Path(__file__).parents[1] / "Makefile").read_text()
    assert "--out $(OUT)" in make


# -- 9. one clear line instead of a traceback -----------------------------------------------------------------

def test_missing_model_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["collect", "--model", "./missing_dir", "--data", DATA, "--out", str(tmp_path / "t")])
    line = one_line_error(capsys, rc, "missing_dir")
    assert "Repo id" not in line


def test_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notamodel").mkdir()
    rc = main(["collect", "--model", str(tmp_path / "notamodel"), "--data", DATA, "--out", str(tmp_path / "t")])
    one_line_error(capsys, rc, "notamodel", "config.json")


def test_a_hub_id_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["collect", "--model", "nobody/no-such-model-xyz", "--data", DATA, "--out", str(tmp_path / "t")])
    one_line_error(capsys, rc, "nobody/no-such-model-xyz", "offline")


def test_out_is_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    rc = main(["collect", *TINY, "--data", DATA, "--out", str(tmp_path / "f")])
    one_line_error(capsys, rc, str(tmp_path / "f"))


def test_out_cannot_be_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["collect", *TINY, "--data", DATA, "--out", "/sys/lvsal-cannot-write"])
    one_line_error(capsys, rc, "/sys/lvsal-cannot-write")


def test_unwritable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "file"))
    rc = main(["collect", *TINY, "--data", "synthetic:split=test,n=5,seed=9", "--out", str(tmp_path / "t")])
    one_line_error(capsys, rc, "LVSAL_CACHE")


def _coco(root: Path, images: object = None, caption: object = "A dog.") -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "val2014").mkdir()
    ims = images if images is not None else [{"id": 1, "file_name": "a.jpg"}]
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(
        {"images": ims, "annotations": [], "categories": [{"id": 1, "name": "dog"}]}))
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(
        {"annotations": [{"image_id": 1, "caption": caption}]}))
    return root


def test_coco_n_abc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _coco(tmp_path / "coco")
    rc = main(["collect", *TINY, "--data", f"coco:{root}:n=abc", "--out", str(tmp_path / "t")])
    one_line_error(capsys, rc, "n=", "abc")


@pytest.mark.parametrize("bad", [{"images": [1, 2]}, {"caption": None}])
def test_coco_records_of_the_wrong_type(bad: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _coco(tmp_path / "coco", **bad)
    rc = main(["collect", *TINY, "--data", f"coco:{root}", "--out", str(tmp_path / "t")])
    which = "instances_val2014.json" if "images" in bad else "captions_val2014.json"
    one_line_error(capsys, rc, which)


def test_pope_record_of_the_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images").mkdir()
    path = tmp_path / "coco_pope_random.json"
    path.write_text(json.dumps({"question_id": 7, "image": "a.jpg", "text": None, "label": "yes"}) + "\n")
    rc = main(["collect", *TINY, "--data", f"pope:{path}:images={tmp_path / 'images'}", "--out", str(tmp_path / "t")])
    one_line_error(capsys, rc, path.name, "7", "text")


def test_a_data_path_with_colon_and_equals(tmp_path: Path) -> None:
    from lvsal_data.sources import parse_spec

    root = _coco(tmp_path / "run:a=b")
    spec = parse_spec(f"coco:{root}:n=1")
    assert spec.arg == str(root) and spec.options == {"n": "1"}
    assert parse_spec(f"coco:{root}").arg == str(root)


# -- 10. threads -------------------------------------------------------------------------------------------

def test_cpu_threads_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from lvsal_data.cli import set_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert set_cpu_threads(None) == 1 and torch.get_num_threads() == 1
        assert set_cpu_threads(3) == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert set_cpu_threads(None) is None  # the user's setting stands
    finally:
        torch.set_num_threads(before)


# -- 11. nothing of the user's machine in the card -------------------------------------------------------

def test_redact_paths() -> None:
    from lvsal_data.hub import redact

    home = str(Path.home())
    doc = {"command": f"{home}/venv/bin/lvsal collect --out {home}/x", "source": {"root": "/data/coco2014"},
           "skipped": [{"reason": f"image not found: {home}/coco/val2014/1.jpg"}], "n": 3}
    red = json.dumps(redact(doc, roots=["/data/coco2014"]))
    assert home not in red and "/data/coco2014" not in red and '"n": 3' in red


# -- 12. progress names the step ----------------------------------------------------------------------------

def test_interrupted_says_resume(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("lvsal_data.collect.collect", interrupted)
    rc = main(["collect", *TINY, "--data", DATA, "--out", str(tmp_path / "t")])
    assert rc == 130 and "--resume" in capsys.readouterr().err


def test_verify_names_each_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoConfig

    from lvsal_data.commands import verification
    from lvsal_data.models import _resolve

    class Stop(Exception):
        pass

    calls: list[str] = []

    def fake_collect(cfg: object, **kwargs: object) -> None:
        calls.append(str(kwargs["desc"]))  # the progress bar's name
        if len(calls) == 2:
            raise Stop

    monkeypatch.setattr("lvsal_data.collect.collect", fake_collect)
    with pytest.raises(Stop):
        verification.verify(verification.VerifyConfig(data=DATA, out=str(tmp_path / "v"), max_new_tokens=4),
                            lvlm=SimpleNamespace(model=SimpleNamespace(config=AutoConfig.from_pretrained(_resolve("organism")))))
    assert calls == ["verify 1/4: greedy", "verify 2/4: sgrs"]


# -- 13. plots ----------------------------------------------------------------------------------------------

def test_effects_figure_reads_like_the_report() -> None:
    from analysis.plots import effects_figure

    e = {"value": 0.25, "ci_low": 0.2, "ci_high": 0.3}
    fig = effects_figure({"greedy": {"chair_s": e, "pope_f1": e}, "sgrs": {"chair_s": e, "pope_f1": e}},
                         ("chair_s", "pope_f1"))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("CHAIR_S") and "lower is better" in titles[0]
    assert "higher is better" in titles[1]
    assert all("%" in ax.get_ylabel() for ax in fig.axes)
    assert max(fig.axes[0].patches[0].get_height(), 0) == pytest.approx(25)


def test_label_figure_keeps_outliers_from_squashing() -> None:
    import pandas as pd

    from analysis.plots import label_figure

    scores = pd.DataFrame({"label": ["correct", "hallucinated"] * 20,
                           "saliency": [0.01 * (k % 5) for k in range(40)],
                           "sal_last": [0.01 * (k % 5) if k else 50.0 for k in range(40)]})
    fig = label_figure(scores)
    assert len(fig.axes) >= 2  # one panel per statistic, each on its own scale


# -- 15. synthetic samples are named by their source ---------------------------------------------------------

def test_synthetic_ids_name_their_source() -> None:
    from lvsal_data.sources import open_source

    caps = list(open_source("synthetic:split=test,n=2"))
    pope = list(open_source("synthetic:split=test,n=2,task=pope"))
    assert all(s.id.startswith("synthetic-") and s.source == "synthetic" for s in caps + pope)
    assert len({s.id for s in caps + pope}) == len(caps) + len(pope)
