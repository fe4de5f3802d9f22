"""A local Hugging Face dataset folder with an image column and an objects column.

Parquet / arrow files as the Hub stores them (``datasets.load_dataset(folder)``) or a folder
written by ``Dataset.save_to_disk``. Object names are mapped to COCO categories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..labels import mentioned_categories
from .base import CAPTION_PROMPT, Sample, Source, SourceError


class HFFolderSource(Source):
    """Caption samples from a local dataset folder.

    Args:
        folder: The dataset folder.
        image: Image column (default ``image``).
        objects: Objects column, a list of names (default ``objects``).
        prompt: The caption prompt (or a column of that name when it exists).
        split: Split to read when the folder has several (default: the first).
        n: Keep the first n rows (default: all).
    """

    name = "hf"

    def __init__(self, folder: str | None, image: str = "image", objects: str = "objects",
                 prompt: str = CAPTION_PROMPT, split: str | None = None, n: int | str | None = None) -> None:
        import datasets

        if folder is None or not Path(folder).is_dir():
            raise SourceError(f"dataset folder not found: {folder}")
        self.folder = Path(folder)
        try:
            if (self.folder / "dataset_info.json").exists() or (self.folder / "dataset_dict.json").exists():
                ds = datasets.load_from_disk(str(self.folder))
            else:
                ds = datasets.load_dataset(str(self.folder))
        except Exception as err:  # datasets raises many types; name the folder
            raise SourceError(f"cannot read the dataset folder {self.folder}: {err}") from None
        if isinstance(ds, datasets.DatasetDict):
            if split is not None and split not in ds:
                raise SourceError(f"{self.folder}: no split {split!r}; it has {', '.join(ds)}")
            split = split or next(iter(ds))
            ds = ds[split]
        for col in (image, objects):
            if col not in ds.column_names:
                raise SourceError(f"{self.folder}: no column {col!r}; columns: {', '.join(ds.column_names)}")
        self.split = split
        limit = len(ds) if n in (None, "all") else min(int(n), len(ds))
        self._samples = []
        for k in range(limit):
            row = ds[k]
            names = row[objects] or []
            cats = set().union(*(mentioned_categories(str(x)) for x in names)) if names else set()
            rid = str(row.get("id", k))
            img = row[image]
            self._samples.append(Sample(
                id=f"hf-{rid}", image_id=rid, prompt=str(row.get(prompt, prompt)) if prompt in row else prompt,
                task="caption", objects=tuple(sorted(cats)), source=self.name, split=split,
                _image=lambda img=img: img))

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "folder": str(self.folder), "split": self.split, "n": len(self._samples)}
