"""Named registries for extension points (sources, decodings, feature sets).

A name collision raises; an unknown name lists the valid ones.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import LvsalError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table.

    Example:
        >>> DECODINGS = Registry("decoding")
        >>> @DECODINGS.register("greedy")
        ... class Greedy: ...
        >>> DECODINGS["greedy"].__name__
        'Greedy'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise LvsalError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._items))}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
