"""The organism: its world is deterministic and emits the real formats; the shipped weights work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lvsal_data import find_mentions, load_lvlm
from lvsal_data.organism import weights_dir
from lvsal_data.organism.world import CATEGORIES, GLYPHS, PAIRS, PARTNER, make_scene, vision_scene, write_coco
from lvsal_data.sources import open_source
from lvsal_data.vocab import CATEGORY_IDS


def test_world_is_deterministic_from_its_seed() -> None:
    a, b = make_scene("test", 7), make_scene("test", 7)
    assert a == b
    assert np.array_equal(np.asarray(a.render()), np.asarray(b.render()))
    other = make_scene("test", 7, seed=1)
    assert other.instances != a.instances or other.captions != a.captions
    assert not np.array_equal(np.asarray(a.render()), np.asarray(other.render()))


def test_every_category_has_its_own_glyph() -> None:
    assert len(CATEGORIES) >= 20 and all(c in CATEGORY_IDS for c in CATEGORIES)
    assert len(set(GLYPHS.values())) == len(GLYPHS)


def test_pairs_co_occur_in_train_and_are_broken_in_test() -> None:
    def partner_rate(split: str) -> float:
        hits = total = 0
        for i in range(400):
            cats = make_scene(split, i).categories
            for c in cats:
                if c in PARTNER:
                    total += 1
                    hits += PARTNER[c] in cats
        return hits / total

    assert partner_rate("train") > 0.6 > 0.3 > partner_rate("test")
    assert all(a in CATEGORIES and b in CATEGORIES for a, b in PAIRS)


def test_vision_pretraining_stream_is_its_own_unpaired_world() -> None:
    """The tower's pretraining scenes: deterministic, none of them a train/val/test image, no
    captions, and categories drawn independently (the pairs at their chance rate)."""
    drawn = [vision_scene(i) for i in range(400)]
    assert vision_scene(3) == drawn[3]
    assert np.array_equal(np.asarray(vision_scene(3).render()), np.asarray(drawn[3].render()))
    ids = {s.image_id for s in drawn}
    assert len(ids) == len(drawn)
    assert not ids & {make_scene(split, i).image_id for split in ("train", "val", "test") for i in range(400)}
    assert all(not s.captions and s.instances for s in drawn)
    hits = total = 0
    for s in drawn:
        for c in s.categories:
            if c in PARTNER:
                total += 1
                hits += PARTNER[c] in s.categories
    assert hits / total < 0.3


def test_captions_name_only_true_objects_with_synonyms_and_plurals() -> None:
    words = set()
    for i in range(60):
        scene = make_scene("val", i)
        for text in scene.captions:
            assert 2 <= len(re.findall(r"[.!?](?:\s|$)", text)) <= 4, text
            mentions = find_mentions(text)
            assert {m.category for m in mentions} == set(scene.categories), text
            words |= {m.word for m in mentions}
    assert words - set(CATEGORIES), "no synonym or plural was used"
    assert any(w.endswith("s") and w[:-1] in CATEGORIES for w in words)


def test_emitted_files_read_with_our_coco_and_pope_loaders(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "world", "val", 8)
    caps = list(open_source(f"coco:{root}:split=val,n=all"))
    assert len(caps) == 8 and all(s.task == "caption" for s in caps)
    assert all(s.objects and set(s.objects) <= set(CATEGORIES) for s in caps)
    for kind in ("random", "popular", "adversarial"):
        rows = [json.loads(line) for line in (root / "pope" / f"coco_pope_{kind}.json").read_text().splitlines()]
        assert {r["label"] for r in rows} == {"yes", "no"}
        qs = list(open_source(f"pope:{root / 'pope' / f'coco_pope_{kind}.json'}:images={root / 'images'}"))
        assert len(qs) == len(rows) and {q.split for q in qs} == {kind}
        assert all(q.load_image().size == (96, 96) for q in qs[:2])


needs_weights = pytest.mark.skipif(not (weights_dir() / "model.safetensors").exists(),
                                   reason="organism weights not trained")


@needs_weights
def test_shipped_weights_are_small_and_load_with_auto_classes() -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

    size = sum(p.stat().st_size for p in weights_dir().iterdir() if p.is_file())
    assert size <= 20 * 2**20
    model = AutoModelForImageTextToText.from_pretrained(weights_dir())
    processor = AutoProcessor.from_pretrained(weights_dir())
    assert isinstance(model, LlavaForConditionalGeneration)
    assert "ASSISTANT:" in processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}], add_generation_prompt=True)
    assert (weights_dir() / "README.md").exists() and (weights_dir() / "evaluation.json").exists()


@needs_weights
def test_organism_captions_a_fixed_scene_with_a_true_object() -> None:
    lvlm = load_lvlm("organism")
    scene = make_scene("test", 0)
    inputs = lvlm.prepare(scene.render(), "Please describe this image in detail.")
    with torch.no_grad():
        out = lvlm.model.generate(**inputs.inputs, max_new_tokens=40, do_sample=False)
    text = lvlm.processor.decode(out[0, inputs.inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert {m.category for m in find_mentions(text)} & set(scene.categories), text


@pytest.mark.slow  # trains twice (determinism), about a minute on two cores
def test_training_entry_point_runs_a_few_steps(tmp_path: Path, plain_mode: int) -> None:
    from lvsal_data.organism.train import main

    few = ["--train-scenes", "24", "--steps", "3", "--vision-steps", "2", "--batch-size", "4",
           "--vision-batch", "4", "--warmup", "1"]
    for run in ("a", "b"):  # twice: the recipe (bf16 autocast included) is deterministic
        assert main(["--out", str(tmp_path / run), *few]) == 0
    log = json.loads((tmp_path / "a" / "training_log.json").read_text())
    assert len(log["loss"]) >= 1 and log["config"]["steps"] == 3 and log["config"]["bf16"] is True
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staging folder left behind
    assert (tmp_path / "a" / "model.safetensors").stat().st_mode & 0o777 == plain_mode  # not 0600
    lvlm = load_lvlm(str(tmp_path / "a"))
    assert lvlm.model.config.model_type == "llava"


def test_training_flags_parse_strictly(capsys: pytest.CaptureFixture[str]) -> None:
    from lvsal_data.organism.train import _flag, main

    assert _flag("false") is False and _flag("Yes") is True and _flag("0") is False
    with pytest.raises(SystemExit):
        main(["--bf16", "flase"])
    assert "expected true or false" in capsys.readouterr().err
