"""Every source reads its real format; bad input fails with one line naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from lvsal_data.errors import UnknownNameError
from lvsal_data.sources import SOURCES, ImageLoadError, Sample, SourceError, open_source, parse_spec


def _image(path: Path, colour: str = "red") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), colour).save(path)


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    return _coco_dir(tmp_path)


def _coco_dir(tmp_path: Path) -> Path:
    """COCO 2014 layout: annotations/instances_val2014.json, captions_val2014.json, val2014/."""
    root = tmp_path / "coco"
    files = {1: "COCO_val2014_000000000001.jpg", 2: "COCO_val2014_000000000002.jpg",
             3: "COCO_val2014_000000000003.jpg"}
    for i, name in files.items():
        if i != 3:
            _image(root / "val2014" / name)
    (root / "val2014" / files[3]).write_bytes(b"not a jpeg")  # corrupt
    images = [{"id": i, "file_name": f, "width": 32, "height": 24} for i, f in files.items()]
    cats = [{"id": 18, "name": "dog", "supercategory": "animal"},
            {"id": 34, "name": "frisbee", "supercategory": "sports"},
            {"id": 47, "name": "cup", "supercategory": "kitchen"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 18, "bbox": [5, 5, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 47, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}]
    caps = [{"id": 1, "image_id": 1, "caption": "Two puppies play with a frisbee."},
            {"id": 2, "image_id": 2, "caption": "A mug on a kitchen table."},
            {"id": 3, "image_id": 3, "caption": "Nothing to see."}]
    (root / "annotations").mkdir()
    instances = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(instances))
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": caps}))
    return root


def test_coco_chair_ground_truth(coco_dir: Path) -> None:
    src = open_source(f"coco:{coco_dir}:n=all")
    by_image = {s.image_id: s for s in src}
    assert set(by_image) == {"1", "2", "3"}
    # instance categories plus objects named in the reference captions (CHAIR)
    assert by_image["1"].objects == ("dog", "frisbee")
    assert by_image["2"].objects == ("cup", "dining table")
    assert by_image["3"].objects == ()
    assert all(s.prompt == "Please describe this image in detail." and s.task == "caption" for s in src)
    assert by_image["1"].load_image().size == (32, 24)


def test_coco_seeded_choice(coco_dir: Path) -> None:
    a = [s.id for s in open_source(f"coco:{coco_dir}:n=2,seed=7")]
    b = [s.id for s in open_source(f"coco:{coco_dir}:n=2,seed=7")]
    assert a == b and len(a) == 2
    everything = {s.id for s in open_source(f"coco:{coco_dir}:n=all")}
    assert set(a) <= everything


def test_bad_images_raise_a_named_skip(coco_dir: Path) -> None:
    by_image = {s.image_id: s for s in open_source(f"coco:{coco_dir}:n=all")}
    with pytest.raises(ImageLoadError, match="corrupt image .*000000000003"):
        by_image["3"].load_image()
    (coco_dir / "val2014" / "COCO_val2014_000000000002.jpg").unlink()
    with pytest.raises(ImageLoadError, match="image not found: .*000000000002"):
        by_image["2"].load_image()


def test_missing_inputs_name_the_path(tmp_path: Path, coco_dir: Path) -> None:
    with pytest.raises(SourceError, match=f"COCO folder not found: {tmp_path / 'nope'}"):
        open_source(f"coco:{tmp_path / 'nope'}")
    (coco_dir / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(SourceError, match="captions_val2014.json"):
        open_source(f"coco:{coco_dir}")


def test_malformed_json_names_file_and_position(coco_dir: Path) -> None:
    path = coco_dir / "annotations" / "instances_val2014.json"
    path.write_text('{"images": [\n  {"id": 1,, }\n]}')
    with pytest.raises(SourceError, match=r"malformed JSON in .*instances_val2014.json at line 2, column 12"):
        open_source(f"coco:{coco_dir}")


def _pope_rows() -> list[dict]:
    return [{"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"},
            {"question_id": 2, "image": "a.jpg", "text": "Is there a wine glass in the image?", "label": "no"}]


def test_pope_jsonl(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "a.jpg")
    path = tmp_path / "pope" / "coco_pope_adversarial.json"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in _pope_rows()))
    samples = list(open_source(f"pope:{path}"))
    assert [s.expected for s in samples] == ["yes", "no"]
    assert [s.question_object for s in samples] == ["dog", "wine glass"]
    assert samples[0].objects == ("dog",) and samples[1].objects == ()
    assert samples[0].prompt == "Is there a dog in the image? Please just answer yes or no."
    assert {s.split for s in samples} == {"adversarial"} and all(s.task == "yesno" for s in samples)
    assert samples[0].load_image().size == (32, 24)


def test_pope_bad_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    path = tmp_path / "coco_pope_random.json"
    path.write_text(json.dumps(_pope_rows()[0]) + "\n{oops\n")
    with pytest.raises(SourceError, match=r"coco_pope_random.json at line 2"):
        open_source(f"pope:{path}:images={tmp_path / 'images'}")


def test_pope_hub_folder(tmp_path: Path) -> None:
    import datasets

    img = Image.new("RGB", (16, 16), "blue")
    ds = datasets.Dataset.from_dict({
        "id": ["0", "1"], "question_id": ["7", "8"],
        "question": ["Is there a cat in the image?", "Is there a bus in the image?"],
        "answer": ["yes", "no"], "image_source": ["COCO_val2014_1", "COCO_val2014_1"], "image": [img, img],
        "category": ["popular", "popular"]}, features=datasets.Features({
            "id": datasets.Value("string"), "question_id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"), "image_source": datasets.Value("string"), "image": datasets.Image(),
            "category": datasets.Value("string")}))
    (tmp_path / "pope" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "pope" / "data" / "test-00000-of-00001.parquet"))
    samples = list(open_source(f"pope:{tmp_path / 'pope'}"))
    expected = [("cat", "yes", "popular"), ("bus", "no", "popular")]
    assert [(s.question_object, s.expected, s.split) for s in samples] == expected
    assert samples[0].load_image().size == (16, 16)


def test_amber(tmp_path: Path) -> None:
    (s,) = list(open_source(f"amber:{_amber_dir(tmp_path)}"))
    assert s.objects == ("dog", "person") and s.prompt == "Describe this image." and s.task == "caption"


def test_hf_folder(tmp_path: Path) -> None:
    (s,) = list(open_source(str(_hf_dir(tmp_path))))
    assert s.objects == ("dog",) and s.id == "hf-x1" and s.load_image().size == (8, 8)


def test_synthetic_goes_through_the_real_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path))
    caps = list(open_source("synthetic:split=test,n=6"))
    assert len(caps) == 6 and all(s.objects for s in caps)
    questions = list(open_source("synthetic:split=test,n=6,task=pope,pope=popular"))
    assert {s.expected for s in questions} == {"yes", "no"} and {s.split for s in questions} == {"popular"}
    assert (tmp_path / "synthetic-v2" / "test-n6-seed0" / "annotations" / "instances_test.json").exists()


def test_spec_parsing_and_registry() -> None:
    assert parse_spec("synthetic").name == "synthetic"
    assert parse_spec("pope:/x/y.json:images=/z").options == {"images": "/z"}
    assert parse_spec("pope:/x/y.json:images=/z").arg == "/x/y.json"
    with pytest.raises(UnknownNameError, match=f"valid: {', '.join(SOURCES.names())}"):
        open_source("vqa:somewhere")
    with pytest.raises(SourceError, match="bad option 'split'"):
        parse_spec("synthetic:n=3,split")
    with pytest.raises(SourceError, match="synthetic takes options only"):
        open_source("synthetic:n")


def _amber_dir(tmp_path: Path) -> Path:
    root = tmp_path / "amber"
    (root / "data" / "query").mkdir(parents=True)
    _image(root / "image" / "AMBER_1.jpg")
    (root / "data" / "query" / "query_generative.json").write_text(json.dumps(
        [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."}]))
    (root / "data" / "annotations.json").write_text(json.dumps(
        [{"id": 1, "type": "generative", "truth": ["sky", "man", "dog", "grass"], "hallu": ["cat"]}]))
    return root


def _hf_dir(tmp_path: Path) -> Path:
    import datasets

    img = Image.new("RGB", (8, 8))
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                  "objects": datasets.Sequence(datasets.Value("string"))})
    ds = datasets.Dataset.from_dict({"id": ["x1"], "image": [img], "objects": [["puppy", "tree"]]}, features=features)
    ds.save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def _pope_file(tmp_path: Path) -> Path:
    _image(tmp_path / "images" / "a.jpg")
    path = tmp_path / "coco_pope_random.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in _pope_rows()))
    return path


#: A small valid ``--data`` spec per registered source, made in a temporary folder. A new source
#: gets the contract test below by adding its example here (the test fails for one without).
EXAMPLES: dict[str, Callable[[Path], list[str]]] = {
    "amber": lambda tmp: [f"amber:{_amber_dir(tmp)}"],
    "coco": lambda tmp: [f"coco:{_coco_dir(tmp)}:n=all"],
    "hf": lambda tmp: [f"hf:{_hf_dir(tmp)}"],
    "pope": lambda tmp: [f"pope:{_pope_file(tmp)}"],
    "synthetic": lambda tmp: ["synthetic:n=4", "synthetic:n=4,task=pope,pope=random"],
}


@pytest.mark.parametrize("name", SOURCES.names())
def test_contract_every_registered_source_yields_valid_samples(name: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in EXAMPLES, f"source {name!r} has no example spec in EXAMPLES"
    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "cache"))
    for spec in EXAMPLES[name](tmp_path):
        source = open_source(spec)
        samples = list(source)
        assert samples and len({s.id for s in samples}) == len(samples)
        assert isinstance(source.describe(), dict) and isinstance(source.protocol(), dict)
        for s in samples:
            assert isinstance(s, Sample) and s.task in ("caption", "yesno") and s.prompt
            assert (s.expected in ("yes", "no")) == (s.task == "yesno")
            assert all(isinstance(o, str) for o in s.objects)
            try:
                assert s.load_image().mode  # an image, or a named skip
            except ImageLoadError:
                pass


def test_protocol_defaults_are_the_papers(coco_dir: Path, tmp_path: Path) -> None:
    """coco:DIR follows OPERA's CHAIR protocol (500 seeded images, the detail prompt, 512 new
    tokens); POPE appends its yes/no suffix and allows LLaVA's 128 tokens."""
    coco = open_source(f"coco:{coco_dir}")
    assert coco.protocol() == {"name": "CHAIR, OPERA's protocol", "prompt": "Please describe this image in detail.",
                               "images": 3, "seed": 0, "split": "val2014", "max_new_tokens": 512}
    assert open_source(f"coco:{coco_dir}:n=2").protocol()["images"] == 2
    _image(tmp_path / "images" / "a.jpg")
    path = tmp_path / "coco_pope_random.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in _pope_rows()))
    pope = open_source(f"pope:{path}")
    assert pope.protocol()["max_new_tokens"] == 128
    assert all(s.prompt.endswith(pope.protocol()["prompt_suffix"]) for s in pope)
