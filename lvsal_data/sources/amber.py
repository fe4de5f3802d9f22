"""AMBER (Wang et al., 2023), generative part: ``data/query/query_generative.json``
(``id``, ``image``, ``query``) and ``data/annotations.json`` (``id``, ``type``, ``truth``,
``hallu``), images in ``image/`` (or ``images=FOLDER``).

AMBER's object vocabulary is larger than COCO's; ground truth keeps the ``truth`` words that
name a COCO category (so CHAIR here is CHAIR over COCO's 80 categories, like every other source).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..labels import mentioned_categories
from .base import Sample, Source, SourceError, count_option, read_json, require_dir, require_keys


class AmberSource(Source):
    """Caption samples from an AMBER folder.

    Args:
        root: The AMBER folder (holding ``data/``).
        images: Image folder (default ``root/image``, else ``root/images``).
        n: Keep the first n queries (default: all).
    """

    name = "amber"

    def __init__(self, root: str | None, images: str | None = None, n: int | str | None = None) -> None:
        if root is None:
            raise SourceError("amber needs a folder: amber:DIR")
        self.root = require_dir(Path(root), "AMBER")
        self.queries_path = self.root / "data" / "query" / "query_generative.json"
        self.annotations_path = self.root / "data" / "annotations.json"
        for path in (self.queries_path, self.annotations_path):
            if not path.is_file():
                raise SourceError(f"AMBER file not found: {path}")
        if images is not None:
            self.images = require_dir(Path(images), "image")
        else:
            candidates = [self.root / "image", self.root / "images"]
            found = next((c for c in candidates if c.is_dir()), None)
            if found is None:
                raise SourceError(f"image folder not found: tried {', '.join(map(str, candidates))}")
            self.images = found
        queries = read_json(self.queries_path)
        annotations = {}
        for a in read_json(self.annotations_path):
            require_keys(a, ("id",), self.annotations_path, "an annotation")
            annotations[a["id"]] = a
        self._samples = []
        for q in queries:
            require_keys(q, ("id", "image", "query"), self.queries_path, "a query",
                         types={"image": str, "query": str})
            ann = annotations.get(q["id"])
            if ann is None:
                raise SourceError(f"{self.annotations_path}: no annotation for query id {q['id']}")
            require_keys(ann, ("truth",), self.annotations_path, f"annotation {q['id']}", types={"truth": list})
            objects = set().union(*(mentioned_categories(w) for w in ann["truth"])) if ann["truth"] else set()
            self._samples.append(Sample(
                id=f"amber-{q['id']}", image_id=str(q["image"]), prompt=q["query"], task="caption",
                objects=tuple(sorted(objects)), source=self.name, split="generative",
                image_path=self.images / q["image"]))
        count = count_option("n", n)
        if count is not None:
            self._samples = self._samples[:count]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def protocol(self) -> dict[str, Any]:
        # AMBER fixes no answer length; ours: CHAIR's 512, so long descriptions are not cut short
        return {"name": "AMBER, generative queries", "max_new_tokens": 512}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": str(self.root), "n": len(self._samples)}
