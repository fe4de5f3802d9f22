"""The organism's synthetic world as a source, read through the same COCO / POPE readers.

``synthetic[:split=test,n=200,seed=0,task=caption|pope,pope=random|popular|adversarial]``.
The world is written once into a cache folder (``$LVSAL_CACHE`` or ``~/.cache/lvsal``) in the
real COCO and POPE formats, atomically, and then read like any COCO / POPE copy.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, cast

from .base import CAPTION_PROMPT, Sample, Source, SourceError, count_option, int_option
from .coco import CocoSource
from .pope import POPE_SPLITS, PopeSource

WORLD_VERSION = "2"


def cache_root() -> Path:
    return Path(os.environ.get("LVSAL_CACHE", Path.home() / ".cache" / "lvsal"))


def world_folder(split: str, n: int, seed: int) -> Path:
    """The folder holding this slice of the world, generated on first use."""
    from ..organism.world import write_coco

    folder = cache_root() / f"synthetic-v{WORLD_VERSION}" / f"{split}-n{n}-seed{seed}"
    if not (folder / "annotations" / f"instances_{split}.json").exists():
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        except OSError as err:
            raise SourceError(f"cannot write the synthetic world into the cache folder {cache_root()} "
                              f"({err.strerror or err}); set LVSAL_CACHE to a writable folder") from None
        try:
            write_coco(tmp, split, n, seed)
            if folder.exists():  # a concurrent writer finished first
                shutil.rmtree(tmp)
            else:
                tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


class SyntheticSource(Source):
    """Samples of the synthetic world.

    Args:
        arg: Unused (``synthetic`` takes options only).
        split: ``train`` / ``val`` / ``test`` (default ``test``: co-occurrence pairs broken).
        n: Number of scenes (default 200).
        seed: World seed (default 0, the organism's).
        task: ``caption`` (default) or ``pope``.
        pope: POPE split for ``task=pope`` (default ``adversarial``).
    """

    name = "synthetic"

    def __init__(self, arg: str | None = None, split: str = "test", n: int | str = 200, seed: int | str = 0,
                 task: str = "caption", pope: str = "adversarial") -> None:
        if arg:
            raise SourceError(f"synthetic takes options only (synthetic:split=test,n=200), got {arg!r}")
        if split not in ("train", "val", "test"):
            raise SourceError(f"synthetic split must be train, val or test, got {split!r}")
        if task not in ("caption", "pope"):
            raise SourceError(f"synthetic task must be caption or pope, got {task!r}")
        if pope not in POPE_SPLITS:
            raise SourceError(f"synthetic pope split must be one of {', '.join(POPE_SPLITS)}, got {pope!r}")
        count = cast(int, count_option("n", n, minimum=1, all_ok=False))  # never None without all_ok
        self.split, self.n, self.seed, self.task, self.pope = split, count, int_option("seed", seed), task, pope
        folder = world_folder(split, self.n, self.seed)
        if task == "caption":
            self._inner: Source = CocoSource(str(folder), split=split, images=str(folder / "images"), n="all",
                                             seed=self.seed)
        else:
            self._inner = PopeSource(str(folder / "pope" / f"coco_pope_{pope}.json"), images=str(folder / "images"))
        self.folder = folder
        # named by their source: synthetic-<image> (captions), synthetic-pope-<split>-<question>
        self._samples = [dataclasses.replace(s, id=f"{self.name}-{s.id.removeprefix('coco-')}", source=self.name)
                         for s in self._inner]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def protocol(self) -> dict[str, Any]:
        if self.task == "caption":  # the organism's own evaluation (its model card) uses 64 tokens
            return {"name": "organism captioning (CHAIR on the synthetic world)", "prompt": CAPTION_PROMPT,
                    "max_new_tokens": 64}
        return {**self._inner.protocol(), "name": "POPE, LLaVA's protocol, on the synthetic world", "max_new_tokens": 8}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "n": self.n, "seed": self.seed, "task": self.task,
                "pope": self.pope if self.task == "pope" else None, "world_version": WORLD_VERSION}
