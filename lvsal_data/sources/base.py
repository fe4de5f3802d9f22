"""The sample contract every source yields, the source registry and the ``--data`` spec syntax.

A spec is ``NAME`` or ``NAME:ARG`` optionally followed by ``:key=value,key=value``::

    synthetic                       synthetic:split=test,n=200
    coco:/data/coco2014             coco:/data/coco2014:n=500,seed=0
    pope:/data/pope/coco_pope_adversarial.json:images=/data/coco2014/val2014
    amber:/data/amber               /path/to/hf_dataset_folder
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from PIL import Image, UnidentifiedImageError

from .. import io
from ..errors import LvsalError
from ..prompts import CAPTION_PROMPT, POPE_SUFFIX  # noqa: F401  (re-exported)
from ..registry import SOURCES



class SourceError(LvsalError):
    """A missing or malformed dataset file or folder (the message names it)."""


class ImageLoadError(LvsalError):
    """One sample's image is missing or corrupt: the collector records a skip and goes on."""


@dataclass(frozen=True)
class Sample:
    """One annotated prompt.

    Attributes:
        id: Unique within the source.
        image_id: The image's id (the grouping key: no image in both train and test).
        prompt: The user prompt (POPE's suffix already appended for yes/no).
        task: ``"caption"`` or ``"yesno"``.
        objects: Ground-truth categories present in the image (canonical COCO names).
        expected: ``"yes"`` / ``"no"`` for yes/no samples.
        question_object: The category a yes/no question asks about.
        split: The source's split (POPE: random / popular / adversarial).
        image_path: Where the image file is (None when held in memory).
    """

    id: str
    image_id: str
    prompt: str
    task: str
    objects: tuple[str, ...]
    source: str
    expected: str | None = None
    question_object: str | None = None
    split: str | None = None
    image_path: Path | None = None
    _image: Callable[[], Image.Image] | None = field(default=None, repr=False, compare=False)

    def load_image(self) -> Image.Image:
        """The image as RGB; raises :class:`ImageLoadError` naming the file when it is unusable."""
        try:
            if self._image is not None:
                img = self._image()
            elif self.image_path is not None:
                with Image.open(self.image_path) as f:
                    img = f.convert("RGB")
            else:
                raise ImageLoadError(f"sample {self.id} has no image")
            return img.convert("RGB")
        except FileNotFoundError:
            raise ImageLoadError(f"image not found: {self.image_path}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ImageLoadError(f"corrupt image {self.image_path or self.id}: {err}") from None


class Source:
    """Base class: an iterable of :class:`Sample` plus a description for the manifest."""

    name = "base"

    def __iter__(self) -> Iterator[Sample]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this source."""
        return {"name": self.name}

    def protocol(self) -> dict[str, Any]:
        """The evaluation protocol the source follows (written into the manifest and the card):
        at least its ``name``, and the ``max_new_tokens`` the protocol fixes, when it fixes one."""
        return {"name": self.name}




def read_json(path: Path) -> Any:
    """Parse a JSON file; errors name the file and the position."""
    return io.read_json(path, error=SourceError)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse a JSON-lines file (POPE's format); errors name the file and the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SourceError(f"file not found: {path}") from None
    rows = []
    for k, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SourceError(f"malformed JSON in {path} at line {k}, column {err.colno}: {err.msg}") from None
    return rows


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise SourceError(f"{what} folder not found: {path}")
    return path


def require_keys(row: Any, keys: tuple[str, ...], path: Path, where: str,
                 types: dict[str, type | tuple[type, ...]] | None = None) -> None:
    """Check that a record is an object with ``keys`` and, for those in ``types``, values of those
    types; the error names the file, the record (by its id) and the field.

    Raises:
        SourceError: The record is not an object, lacks a field, or has one of the wrong type.
    """
    if not isinstance(row, dict):
        raise SourceError(f"{path}: {where} is {_short(row)}, expected an object with field(s) {', '.join(keys)}")
    missing = [k for k in keys if k not in row]
    if missing:
        raise SourceError(f"{path}: {where} lacks field(s) {', '.join(missing)}")
    for key, kind in (types or {}).items():
        value = row.get(key)
        if key in row and (not isinstance(value, kind) or isinstance(value, bool)):
            ident = next((f" ({k} {row[k]!r})" for k in ("question_id", "id", "image_id") if k in row and k != key), "")
            names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise SourceError(f"{path}: {where}{ident} has {key}={_short(value)}; expected {names}")


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def count_option(key: str, value: int | str | None, minimum: int = 0, all_ok: bool = True) -> int | None:
    """A data spec's count option (``n=500``, ``n=all``) as an int; None for ``all`` / unset.

    Raises:
        SourceError: Not a whole number >= ``minimum`` (naming ``key=value``).
    """
    if value is None or (all_ok and str(value) == "all"):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum:
        allowed = f"a whole number >= {minimum}" + (" or all" if all_ok else "")
        raise SourceError(f"bad data spec option {key}={value}: expected {allowed}")
    return number


def int_option(key: str, value: int | str) -> int:
    """A data spec's integer option (``seed=0``)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SourceError(f"bad data spec option {key}={value}: expected a whole number") from None


@dataclass(frozen=True)
class Spec:
    """A parsed ``--data`` spec."""

    name: str
    arg: str | None
    options: dict[str, str]


def parse_spec(spec: str) -> Spec:
    """Split ``NAME[:ARG][:k=v,...]``; a bare path is a local HF dataset folder.

    Options follow the last ``:``. An ``ARG`` that is an existing path is taken whole, so a path
    holding ``:`` or ``=`` works as it is (``coco:/runs/a=1:b`` with no options).

    Example:
        >>> parse_spec("synthetic:split=test,n=20")
        Spec(name='synthetic', arg=None, options={'split': 'test', 'n': '20'})
        >>> parse_spec("coco:/data/coco:n=500").arg
        '/data/coco'
    """
    if not spec:
        raise SourceError("empty data spec; e.g. synthetic, coco:DIR, pope:FILE, amber:DIR or a dataset folder")
    name, _, rest = spec.partition(":")
    if name not in SOURCES and (Path(spec).exists() or "/" in name or name.startswith(".")):
        return Spec("hf", spec, {})
    options: dict[str, str] = {}
    arg: str | None = rest or None
    if rest and not Path(rest).exists():  # an existing path is the argument, ':' and '=' in it too
        head, sep, tail = rest.rpartition(":")
        opts_part = tail if sep else rest
        if "=" in opts_part:
            arg = head if sep else None
            for item in opts_part.split(","):
                key, eq, value = item.partition("=")
                if not eq or not key:
                    raise SourceError(f"bad option {item!r} in data spec {spec!r}; expected key=value")
                options[key.strip()] = value.strip()
    return Spec(name, arg, options)


def open_source(spec: str) -> Source:
    """Build the source a ``--data`` spec names.

    Raises:
        UnknownNameError: The name is not registered (the message lists the valid ones).
        SourceError: Its files are missing or malformed.
    """
    parsed = parse_spec(spec)
    factory = SOURCES[parsed.name]
    try:
        return factory(parsed.arg, **parsed.options)
    except TypeError as err:
        raise SourceError(f"data spec {spec!r}: {err}") from None
    except ValueError as err:  # a source's own conversion of an option
        raise SourceError(f"data spec {spec!r}: {err}") from None
