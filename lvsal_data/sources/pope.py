"""POPE (Li et al., 2023) yes/no object probing, LLaVA's protocol: " Please just answer yes or
no." is appended to each question.

Two formats: POPE's own JSON-lines file (``question_id``, ``image``, ``text``, ``label``) with
an image folder, or a local copy of the Hub's POPE dataset (columns ``question_id``,
``question``, ``answer``, ``image``, ``category``) given as a folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from ..labels import find_mentions
from .base import POPE_SUFFIX, Sample, Source, SourceError, count_option, read_jsonl, require_dir, require_keys

POPE_SPLITS = ("random", "popular", "adversarial")
#: LLaVA's POPE evaluation (model_vqa_loader) generates up to 128 new tokens.
MAX_NEW_TOKENS = 128


def asked_object(question: str) -> str | None:
    """The category a POPE question asks about ("Is there a dog in the image?" -> dog)."""
    mentions = find_mentions(question)
    return mentions[0].category if mentions else None


def _split_from_name(path: Path) -> str | None:
    return next((s for s in POPE_SPLITS if re.search(rf"\b{s}\b|_{s}", path.stem)), None)


class PopeSource(Source):
    """Yes/no samples from a POPE file or a local HF POPE dataset folder.

    Args:
        path: The ``.json`` / ``.jsonl`` file, or the dataset folder.
        images: Image folder for the file format (default: ``../images`` or ``./images`` beside it).
        split: Recorded POPE split (default: from the file name, or the dataset's ``category``).
        n: Keep the first n questions (default: all).
    """

    name = "pope"

    def __init__(self, path: str | None, images: str | None = None, split: str | None = None,
                 n: int | str | None = None) -> None:
        if path is None:
            raise SourceError("pope needs a file or folder: pope:FILE")
        self.path = Path(path)
        self.n = count_option("n", n)
        if self.path.is_dir():
            self._samples = self._from_hub_folder(split)
        elif self.path.is_file():
            self._samples = self._from_file(images, split)
        else:
            raise SourceError(f"POPE file or folder not found: {self.path}")
        if self.n is not None:
            self._samples = self._samples[: self.n]

    def _from_file(self, images: str | None, split: str | None) -> list[Sample]:
        if images is not None:
            folder = require_dir(Path(images), "image")
        else:
            candidates = [self.path.parent.parent / "images", self.path.parent / "images"]
            folder = next((c for c in candidates if c.is_dir()), None)
            if folder is None:
                raise SourceError(f"no image folder for {self.path}: pass images=DIR (tried "
                                  f"{', '.join(map(str, candidates))})")
        split = split or _split_from_name(self.path)
        samples = []
        for row in read_jsonl(self.path):
            require_keys(row, ("question_id", "image", "text", "label"), self.path, "a question",
                         types={"question_id": (int, str), "image": str, "text": str, "label": str})
            samples.append(self._sample(str(row["question_id"]), str(row["image"]), row["text"],
                                        str(row["label"]), split, image_path=folder / row["image"]))
        return samples

    def _from_hub_folder(self, split: str | None) -> list[Sample]:
        import datasets

        try:
            ds = datasets.load_dataset(str(self.path), split="test" if (self.path / "data").exists() else None)
        except Exception as err:  # datasets raises many types; name the folder
            raise SourceError(f"cannot read the POPE dataset folder {self.path}: {err}") from None
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[next(iter(ds))]
        for col in ("question_id", "question", "answer", "image"):
            if col not in ds.column_names:
                raise SourceError(f"{self.path}: POPE dataset lacks column {col!r}")
        samples = []
        for k in range(len(ds) if self.n is None else min(self.n, len(ds))):
            row = ds[k]
            row_split = split or row.get("category")
            image = row["image"]
            samples.append(self._sample(str(row["question_id"]), str(row.get("image_source", k)), row["question"],
                                        str(row["answer"]), row_split, loader=lambda image=image: image))
        return samples

    def _sample(self, qid: str, image_id: str, question: str, label: str, split: str | None,
                image_path: Path | None = None, loader: Any = None) -> Sample:
        label = label.strip().lower()
        if label not in ("yes", "no"):
            raise SourceError(f"{self.path}: question {qid} has label {label!r}; expected yes or no")
        obj = asked_object(question)
        objects = (obj,) if (obj and label == "yes") else ()
        return Sample(id=f"{self.name}-{split or 'x'}-{qid}", image_id=image_id, prompt=question.strip() + POPE_SUFFIX,
                      task="yesno", objects=objects, source=self.name, expected=label, question_object=obj,
                      split=split, image_path=image_path, _image=loader)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def protocol(self) -> dict[str, Any]:
        return {"name": "POPE, LLaVA's protocol", "prompt_suffix": POPE_SUFFIX, "answer_rule": "POPE's evaluate.py",
                "max_new_tokens": MAX_NEW_TOKENS}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "n": len(self._samples),
                "splits": sorted({s.split for s in self._samples if s.split})}
