"""Command-line options built from a command's config dataclass (inseq's ``attribute_args``).

Each field becomes ``--field-name`` with the field's real type: ``bool`` a flag, ``int`` /
``float`` / ``str`` a typed value, ``list[int]`` ``6,7,8`` or ``6-8``, ``list[str]`` a comma
list; ``X | None`` takes an X and defaults to None. Field metadata gives ``help``, ``choices``
(a callable returning the registry's names, evaluated when the parser is built) and
``required``. The parsed options become the config again with :func:`config_from_args`.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any, Callable, Union


def int_list(text: str) -> list[int]:
    """Parse ``6,7,8`` (or ``6-8``) into a list of ints.

    Example:
        >>> int_list("6-8"), int_list("0,2")
        ([6, 7, 8], [0, 2])
    """
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(x) for x in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 6,7,8 or 6-8, got {text!r}") from None


def str_list(text: str) -> list[str]:
    """Parse ``a,b,c`` into a list of non-empty strings."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _unwrap_optional(kind: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(kind) in (Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


_PARSERS: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str, list[int]: int_list,
                                              list[str]: str_list}


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def _depth(cls: type, name: str) -> int:
    """How far up ``cls``'s hierarchy field ``name`` is declared (0: by ``cls`` itself)."""
    return next(i for i, c in enumerate(cls.__mro__) if name in getattr(c, "__annotations__", {}))


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = ()) -> None:
    """Add one option per field of the dataclass ``cls`` (the command's own fields first, then
    those of each base class in turn)."""
    hints = typing.get_type_hints(cls)
    for f in sorted(fields(cls), key=lambda f: _depth(cls, f.name)):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _unwrap_optional(hints[f.name])
        help_text = f.metadata.get("help", "")
        default = _default(f)
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        if kind not in _PARSERS:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line parser for type {kind!r}")
        if "default" not in help_text and default not in (None, "") and not f.metadata.get("required"):
            shown = default if not isinstance(default, list) else ",".join(map(str, default))
            help_text = f"{help_text} (default: {shown})"
        kwargs: dict[str, Any] = {"type": _PARSERS[kind], "default": default, "help": help_text}
        if f.metadata.get("required"):
            kwargs["required"] = True
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]()
        parser.add_argument(flag, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The config ``cls`` from parsed options (fields without an option keep their default)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


@dataclass(frozen=True)
class Command:
    """One ``lvsal`` subcommand: its config dataclass (the options) and what runs it.

    Attributes:
        name: The subcommand (a stable name).
        help: One line for ``lvsal --help``.
        config: The dataclass its options are built from.
        run: Runs the command on a config; returns the exit status.
        exclude: Config fields that are no options of this command.
    """

    name: str
    help: str
    config: type
    run: Callable[[Any], int]
    exclude: tuple[str, ...] = ()


__all__ = ["Command", "add_config_arguments", "config_from_args", "int_list", "str_list"]
