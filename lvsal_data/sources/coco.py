"""COCO 2014 with CHAIR's protocol (OPERA's setting): a seeded choice of 500 images, the prompt
"Please describe this image in detail.", answers of up to 512 new tokens, ground truth =
instance categories plus the objects named in the reference captions (Rohrbach et al.).

Layout: ``DIR/annotations/instances_{split}.json``, ``DIR/annotations/captions_{split}.json``
and the images in ``DIR/{split}/`` (or ``images=FOLDER``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator

from ..labels import mentioned_categories
from .base import (CAPTION_PROMPT, Sample, Source, SourceError, count_option, int_option, read_json, require_dir,
                   require_keys)


#: OPERA's CHAIR evaluation caps answers at 512 new tokens (CHAIR grows with length: fix it).
MAX_NEW_TOKENS = 512


class CocoSource(Source):
    """Caption samples from a COCO-format folder.

    Args:
        root: The COCO folder.
        split: Annotation split name (``val2014``).
        images: Image folder (default ``root/split``, else ``root/images``).
        n: How many images (``all`` for every one); default 500 (CHAIR's protocol).
        seed: Seed of the image choice.
        prompt: The caption prompt.
    """

    name = "coco"

    def __init__(self, root: str | None, split: str = "val2014", images: str | None = None,
                 n: int | str = 500, seed: int | str = 0, prompt: str = CAPTION_PROMPT) -> None:
        if root is None:
            raise SourceError("coco needs a folder: coco:DIR")
        self.root = require_dir(Path(root), "COCO")
        self.split = split
        ann = self.root / "annotations"
        self.instances_path = ann / f"instances_{split}.json"
        self.captions_path = ann / f"captions_{split}.json"
        for path in (self.instances_path, self.captions_path):
            if not path.is_file():
                raise SourceError(f"COCO annotation file not found: {path}")
        if images is not None:
            self.images = require_dir(Path(images), "image")
        else:
            candidates = [self.root / split, self.root / "images"]
            found = next((c for c in candidates if c.is_dir()), None)
            if found is None:
                raise SourceError(f"image folder not found: tried {', '.join(map(str, candidates))}")
            self.images = found
        self.n = count_option("n", n)
        self.seed = int_option("seed", seed)
        self.prompt = prompt
        self._samples = self._load()

    def _load(self) -> list[Sample]:
        inst: dict[str, Any] = read_json(self.instances_path)
        caps: dict[str, Any] = read_json(self.captions_path)
        require_keys(inst, ("images", "annotations", "categories"), self.instances_path, "the top level",
                     types={"images": list, "annotations": list, "categories": list})
        require_keys(caps, ("annotations",), self.captions_path, "the top level", types={"annotations": list})
        names = {}
        for c in inst["categories"]:
            require_keys(c, ("id", "name"), self.instances_path, "a category", types={"name": str})
            names[c["id"]] = c["name"]
        files = {}
        for im in inst["images"]:
            require_keys(im, ("id", "file_name"), self.instances_path, "an image",
                         types={"id": (int, str), "file_name": str})
            files[im["id"]] = im["file_name"]
        objects: dict[Any, set[str]] = {i: set() for i in files}
        for a in inst["annotations"]:
            require_keys(a, ("image_id", "category_id"), self.instances_path, "an annotation",
                         types={"image_id": (int, str), "category_id": (int, str)})
            if a["image_id"] in objects and a["category_id"] in names:
                objects[a["image_id"]].add(names[a["category_id"]])
        for c in caps["annotations"]:
            require_keys(c, ("image_id", "caption"), self.captions_path, "a caption", types={"caption": str})
            if c["image_id"] in objects:
                objects[c["image_id"]] |= mentioned_categories(c["caption"])
        ids = sorted(files)
        random.Random(self.seed).shuffle(ids)
        chosen = ids if self.n is None else ids[: self.n]
        return [
            Sample(id=f"{self.name}-{i}", image_id=str(i), prompt=self.prompt, task="caption",
                   objects=tuple(sorted(objects[i])), source=self.name, split=self.split,
                   image_path=self.images / files[i])
            for i in chosen
        ]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def protocol(self) -> dict[str, Any]:
        return {"name": "CHAIR, OPERA's protocol", "prompt": self.prompt, "images": len(self._samples),
                "seed": self.seed, "split": self.split, "max_new_tokens": MAX_NEW_TOKENS}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": str(self.root), "split": self.split, "n": len(self._samples),
                "seed": self.seed, "prompt": self.prompt}
