"""The organism's synthetic world: scenes with exactly known objects, in COCO and POPE formats.

Every scene is a 96x96 image of 2-5 object categories (COCO names), each drawn as a glyph no
other category shares (shape x colour x texture), at varied sizes, positions and counts, over a
noisy background with clutter. In the train and val splits, nine category pairs co-occur as in
COCO (a fork comes with a knife 85% of the time); in the test split every category is drawn
independently, so a caption that names a missing partner hallucinates from the language prior.

Captions have 2-4 sentences (objects and counts, then colours and positions), use synonyms and
plurals ("two puppies"), and list partners side by side. Everything is a deterministic function
of (split, seed, index).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from ..io import atomic_write_text
from ..vocab import CATEGORY_IDS, pluralize

IMAGE_SIZE = 96
SPLITS = {"train": 0, "val": 1, "test": 2}

#: Category -> (shape, colour, texture); no two categories share all three.
GLYPHS: dict[str, tuple[str, str, str]] = {
    "person": ("pentagon", "pink", "solid"),
    "dog": ("circle", "red", "solid"),
    "frisbee": ("ring", "blue", "solid"),
    "cat": ("triangle", "purple", "solid"),
    "couch": ("bar", "green", "striped"),
    "fork": ("cross", "white", "solid"),
    "knife": ("diamond", "cyan", "solid"),
    "cup": ("square", "yellow", "solid"),
    "dining table": ("bar", "white", "dotted"),
    "car": ("square", "red", "striped"),
    "traffic light": ("diamond", "yellow", "dotted"),
    "bird": ("triangle", "cyan", "striped"),
    "horse": ("circle", "green", "dotted"),
    "sheep": ("circle", "white", "striped"),
    "banana": ("bar", "yellow", "solid"),
    "apple": ("circle", "purple", "striped"),
    "pizza": ("triangle", "pink", "dotted"),
    "bottle": ("pentagon", "green", "solid"),
    "wine glass": ("ring", "purple", "dotted"),
    "laptop": ("square", "blue", "dotted"),
    "mouse": ("diamond", "pink", "striped"),
    "umbrella": ("cross", "red", "striped"),
    "teddy bear": ("pentagon", "blue", "striped"),
    "bed": ("square", "cyan", "dotted"),
}
CATEGORIES: tuple[str, ...] = tuple(GLYPHS)

#: COCO-like co-occurrence pairs (both directions) of the training distribution.
PAIRS: tuple[tuple[str, str], ...] = (
    ("fork", "knife"), ("dog", "frisbee"), ("cup", "dining table"), ("cat", "couch"),
    ("laptop", "mouse"), ("car", "traffic light"), ("bottle", "wine glass"), ("teddy bear", "bed"),
    ("horse", "sheep"),
)
PARTNER: dict[str, str] = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}
PAIR_PROB = 0.85

#: Synonyms the captions use now and then (all recognised by lvsal_data.vocab).
CAPTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("man", "woman"), "dog": ("puppy",), "cat": ("kitten",), "couch": ("sofa",),
    "cup": ("mug",), "dining table": ("table",), "car": ("automobile",), "horse": ("pony",),
    "sheep": ("lamb",), "teddy bear": ("teddy",), "laptop": ("computer",), "bird": ("pigeon",),
    "mouse": ("computer mouse",),
}

COLOURS = {
    "red": (214, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 30),
    "purple": (140, 50, 180), "white": (245, 245, 245), "cyan": (40, 200, 210), "pink": (240, 120, 180),
}
NUMBERS = {1: "one", 2: "two", 3: "three"}


@dataclass
class Instance:
    category: str
    bbox: tuple[int, int, int, int]  # x, y, w, h

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.bbox
        return x + w / 2, y + h / 2


@dataclass
class Scene:
    """One annotated image of the world."""

    image_id: int
    split: str
    instances: list[Instance]
    seed: int
    captions: list[str] = field(default_factory=list)

    @property
    def categories(self) -> list[str]:
        return sorted({i.category for i in self.instances})

    @property
    def file_name(self) -> str:
        return f"synthetic_{self.split}_{self.image_id:06d}.png"

    def render(self) -> Image.Image:
        return render(self)


def _scene_rng(split: str, seed: int, index: int) -> random.Random:
    return random.Random(f"lvsal-world/{seed}/{split}/{index}")


def sample_categories(rng: random.Random, paired: bool) -> list[str]:
    """2-5 categories; with ``paired``, a partner joins with probability PAIR_PROB."""
    chosen: list[str] = []
    for cat in rng.sample(CATEGORIES, rng.choice((2, 2, 3, 3, 4))):
        if cat not in chosen:
            chosen.append(cat)
        partner = PARTNER.get(cat)
        if paired and partner and partner not in chosen and rng.random() < PAIR_PROB:
            chosen.append(partner)
    return chosen[:5]


def _place(rng: random.Random, placed: list[Instance], size: int) -> tuple[int, int, int, int] | None:
    for _ in range(60):
        x, y = rng.randint(1, IMAGE_SIZE - size - 1), rng.randint(1, IMAGE_SIZE - size - 1)
        if all(x + size <= px - 1 or px + pw <= x - 1 or y + size <= py - 1 or py + ph <= y - 1
               for px, py, pw, ph in (p.bbox for p in placed)):
            return (x, y, size, size)
    return None


def make_scene(split: str, index: int, seed: int = 0) -> Scene:
    """The deterministic scene ``index`` of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    scene = _draw_scene(split, SPLITS[split] * 1_000_000 + index + 1, index, seed, paired=split != "test")
    scene.captions = [caption(scene, random.Random(f"caption/{seed}/{split}/{index}/{k}")) for k in range(2)]
    return scene


VISION_SPLIT = "vision-pretraining"
VISION_IMAGE_IDS = 9_000_000  # vision_scene(i) has image id VISION_IMAGE_IDS + i + 1


def vision_scene(index: int, seed: int = 0) -> Scene:
    """Scene ``index`` of the vision tower's pretraining stream: categories drawn independently,
    from a namespace of its own (no train / val / test scene), no captions. As a real LVLM's
    image encoder is pretrained on other data than its instruction tuning, so the tower learns
    to see objects, not the instruction data's co-occurrences."""
    return _draw_scene(VISION_SPLIT, VISION_IMAGE_IDS + index + 1, index, seed, paired=False)


def _draw_scene(split: str, image_id: int, index: int, seed: int, paired: bool) -> Scene:
    rng = _scene_rng(split, seed, index)
    instances: list[Instance] = []
    for cat in sample_categories(rng, paired=paired):
        count = rng.choices((1, 2, 3), weights=(70, 20, 10))[0]
        for _ in range(count):
            box = _place(rng, instances, rng.randint(14, 26))
            if box is not None:
                instances.append(Instance(cat, box))
    return Scene(image_id=image_id, split=split, instances=instances, seed=seed)


def _shape_points(shape: str, x: int, y: int, s: int) -> list[tuple[float, float]]:
    cx, cy, r = x + s / 2, y + s / 2, s / 2
    if shape == "triangle":
        return [(cx, y), (x + s, y + s), (x, y + s)]
    if shape == "diamond":
        return [(cx, y), (x + s, cy), (cx, y + s), (x, cy)]
    if shape == "pentagon":
        import math

        return [(cx + r * math.sin(2 * math.pi * k / 5), cy - r * math.cos(2 * math.pi * k / 5)) for k in range(5)]
    raise ValueError(shape)


def _draw_glyph(draw: ImageDraw.ImageDraw, inst: Instance, background: tuple[int, int, int]) -> None:
    shape, colour, texture = GLYPHS[inst.category]
    fill = COLOURS[colour]
    x, y, s, _ = inst.bbox
    if shape == "circle":
        draw.ellipse([x, y, x + s, y + s], fill=fill)
    elif shape == "ring":
        draw.ellipse([x, y, x + s, y + s], fill=fill)
        draw.ellipse([x + s // 4, y + s // 4, x + s - s // 4, y + s - s // 4], fill=background)
    elif shape == "square":
        draw.rectangle([x, y, x + s, y + s], fill=fill)
    elif shape == "bar":
        draw.rectangle([x, y + s // 3, x + s, y + s - s // 3], fill=fill)
    elif shape == "cross":
        t = max(2, s // 4)
        draw.rectangle([x, y + s // 2 - t, x + s, y + s // 2 + t], fill=fill)
        draw.rectangle([x + s // 2 - t, y, x + s // 2 + t, y + s], fill=fill)
    else:
        draw.polygon(_shape_points(shape, x, y, s), fill=fill)
    dark = tuple(int(c * 0.35) for c in fill)
    if texture == "striped":
        for k in range(y + 2, y + s, 4):
            draw.line([x, k, x + s, k], fill=dark, width=1)
    elif texture == "dotted":
        for i in range(x + 2, x + s - 1, 5):
            for j in range(y + 2, y + s - 1, 5):
                draw.point([(i, j), (i + 1, j), (i, j + 1), (i + 1, j + 1)], fill=dark)


def render(scene: Scene) -> Image.Image:
    """Draw a scene: noisy background, clutter strokes, then the glyphs."""
    rng = random.Random(f"render/{scene.seed}/{scene.split}/{scene.image_id}")
    base = rng.randint(70, 130)
    background = (base, base, base)
    # PIL's effect_noise draws from C's unseeded rand(); our own generator keeps renders exact.
    noise_rng = np.random.default_rng(int.from_bytes(hashlib.sha256(
        f"noise/{scene.seed}/{scene.split}/{scene.image_id}".encode()).digest()[:8], "little"))
    grey = noise_rng.normal(128.0, 28.0, (IMAGE_SIZE, IMAGE_SIZE)).clip(0, 255).astype(np.uint8)
    noise = Image.fromarray(grey, mode="L").convert("RGB")
    img = Image.blend(Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background), noise, 0.35)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 8)):  # clutter: thin strokes that name nothing
        colour = tuple(rng.randint(40, 220) for _ in range(3))
        pts = [(rng.randint(0, IMAGE_SIZE), rng.randint(0, IMAGE_SIZE)) for _ in range(2)]
        draw.line(pts, fill=colour, width=1)
    for inst in scene.instances:
        _draw_glyph(draw, inst, background)
    return img


def _position(inst: Instance) -> str:
    cx, cy = inst.centre
    col = "left" if cx < IMAGE_SIZE / 3 else "right" if cx > 2 * IMAGE_SIZE / 3 else ""
    row = "top" if cy < IMAGE_SIZE / 3 else "bottom" if cy > 2 * IMAGE_SIZE / 3 else ""
    if row and col:
        return f"at the {row} {col}"
    if row or col:
        return f"at the {row or col}"
    return "in the center"


def _name(cat: str, count: int, rng: random.Random) -> str:
    word = cat
    if cat in CAPTION_SYNONYMS and rng.random() < 0.3:
        word = rng.choice(CAPTION_SYNONYMS[cat])
    return word if count == 1 else pluralize(word)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene, rng: random.Random) -> str:
    """A 2-4 sentence caption: objects and counts, then colours and positions."""
    counts = {c: sum(i.category == c for i in scene.instances) for c in scene.categories}
    order = rng.sample(list(counts), len(counts))
    for cat in list(order):  # partners side by side
        p = PARTNER.get(cat)
        if p in order and abs(order.index(p) - order.index(cat)) > 1:
            order.remove(p)
            order.insert(order.index(cat) + 1, p)
    phrases = []
    for cat in order:
        word = _name(cat, counts[cat], rng)
        phrases.append(f"{_article(word)} {word}" if counts[cat] == 1 else f"{NUMBERS[counts[cat]]} {word}")
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    opener = rng.choice(("The image shows {}.", "In this picture we see {}.", "This is a scene with {}."))
    sentences = [opener.format(listing)]
    for cat in rng.sample(order, min(len(order), rng.randint(1, 3))):
        colour = GLYPHS[cat][1]
        inst = next(i for i in scene.instances if i.category == cat)
        word = _name(cat, counts[cat], rng)
        if counts[cat] == 1:
            sentences.append(f"The {colour} {word} is {_position(inst)}.")
        else:
            sentences.append(f"The {word} are {colour}.")
    return " ".join(sentences)


def scenes(split: str, n: int, seed: int = 0) -> Iterator[Scene]:
    for index in range(n):
        yield make_scene(split, index, seed)


def pope_questions(scene_list: list[Scene], split_kind: str, per_image: int, seed: int = 0) -> list[dict]:
    """POPE-style questions: ``per_image`` positives and as many negatives per image.

    Negatives: ``random`` (any absent category), ``popular`` (the most frequent categories of
    these scenes), ``adversarial`` (absent partners of present objects first, then frequent).
    """
    rng = random.Random(f"pope/{seed}/{split_kind}")
    freq = {c: sum(c in s.categories for s in scene_list) for c in CATEGORIES}
    popular = sorted(CATEGORIES, key=lambda c: (-freq[c], c))
    rows = []
    for scene in scene_list:
        present = scene.categories
        absent = [c for c in CATEGORIES if c not in present]
        if split_kind == "random":
            negatives = rng.sample(absent, per_image)
        elif split_kind == "popular":
            negatives = [c for c in popular if c in absent][:per_image]
        elif split_kind == "adversarial":
            partners = [PARTNER[c] for c in present if c in PARTNER and PARTNER[c] in absent]
            negatives = list(dict.fromkeys(partners + [c for c in popular if c in absent]))[:per_image]
        else:
            raise ValueError(f"unknown POPE split {split_kind!r}")
        positives = rng.sample(present, min(per_image, len(present)))
        for cat, label in [(c, "yes") for c in positives] + [(c, "no") for c in negatives[: len(positives)]]:
            rows.append({"question_id": len(rows) + 1, "image": scene.file_name,
                         "text": f"Is there {_article(cat)} {cat} in the image?", "label": label})
    return rows


def write_coco(out: Path, split: str, n: int, seed: int = 0, pope_per_image: int = 2) -> Path:
    """Emit split ``split`` in the real formats under ``out``.

    Writes ``images/*.png``, ``annotations/instances_{split}.json``,
    ``annotations/captions_{split}.json`` and ``pope/coco_pope_{kind}.json`` (POPE's jsonl) for
    kinds random / popular / adversarial. Returns ``out``.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    (out / "pope").mkdir(exist_ok=True)
    scene_list = list(scenes(split, n, seed))
    images, instances, captions = [], [], []
    for scene in scene_list:
        path = out / "images" / scene.file_name
        if not path.exists():
            tmp = path.with_suffix(".tmp.png")
            scene.render().save(tmp)
            tmp.replace(path)
        images.append({"id": scene.image_id, "file_name": scene.file_name, "width": IMAGE_SIZE, "height": IMAGE_SIZE})
        for inst in scene.instances:
            x, y, w, h = inst.bbox
            instances.append({"id": len(instances) + 1, "image_id": scene.image_id,
                              "category_id": CATEGORY_IDS[inst.category], "bbox": [x, y, w, h],
                              "area": w * h, "iscrowd": 0})
        for text in scene.captions:
            captions.append({"id": len(captions) + 1, "image_id": scene.image_id, "caption": text})
    categories = [{"id": CATEGORY_IDS[c], "name": c, "supercategory": "synthetic"}
                  for c in sorted(CATEGORIES, key=CATEGORY_IDS.get)]
    info = {"description": f"lvsal-data synthetic world, split {split}, seed {seed}", "version": "1"}
    atomic_write_text(out / "annotations" / f"instances_{split}.json",
                      json.dumps({"info": info, "images": images, "annotations": instances, "categories": categories}))
    atomic_write_text(out / "annotations" / f"captions_{split}.json",
                      json.dumps({"info": info, "images": images, "annotations": captions}))
    for kind in ("random", "popular", "adversarial"):
        rows = pope_questions(scene_list, kind, pope_per_image, seed)
        atomic_write_text(out / "pope" / f"coco_pope_{kind}.json", "".join(json.dumps(r) + "\n" for r in rows))
    return out
