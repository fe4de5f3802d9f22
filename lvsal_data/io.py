"""File I/O with the project's guarantees: atomic writes (a reader never sees a half-written
file, a crash leaves the old one) and JSON reads whose errors name the file and the position."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced, given a plain file's mode
    and renamed onto ``path``; on any error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file a plain file's mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``out`` to write files into (``save_pretrained``, say); on
    success each file is given a plain file's mode (transformers writes its weights as 0600) and
    renamed into ``out``, so no file there is ever half-written; the staging folder is removed
    either way."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            if not path.is_file():
                raise OSError(f"staged_folder moves files only; {path.name} in {staging} is not one")
            os.chmod(path, 0o666 & ~_UMASK)
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike, what: str = "file",
              error: Callable[[str], Exception] = InputError) -> Any:
    """Parse a JSON file; a missing file or malformed JSON raises ``error`` with one line that
    names ``what``, the file and, for bad JSON, the line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"malformed JSON in {path} at line {err.lineno}, column {err.colno}: {err.msg}") from None


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a numpy scalar
        return _finite(value.item())
    return value


def write_json(path: str | os.PathLike, value: Any, indent: int = 1) -> None:
    """Write ``value`` as valid JSON, atomically: NaN and infinities become null (``json.dumps``
    would write the invalid ``NaN``)."""
    atomic_write_text(path, json.dumps(_finite(value), indent=indent, allow_nan=False))
