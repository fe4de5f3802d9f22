"""Named registries for the extension points, and plugin loading.

:data:`DECODINGS` and :data:`SOURCES` (and ``lvsal_data.families.FAMILIES``,
``analysis.FEATURE_SETS``) map a name to an object. A name collision raises; an unknown name
lists the valid ones. Built-in entries are registered lazily as ``"module:attribute"`` strings,
so their names are known (for the CLI's choices, say) without importing torch or the module
itself.

Extend them from your own package::

    from lvsal_data.registry import DECODINGS, SOURCES

    @DECODINGS.register("my-decoding")
    class MyDecoding(Greedy): ...

    SOURCES.register_lazy("my-set", "my_package.sources:MySource")

The ``lvsal`` command imports the modules named by the ``lvsal_data.plugins`` entry-point
group of installed packages and by the ``LVSAL_PLUGINS`` environment variable (comma-separated
module names) before it builds its options, so registrations made there are usable from the
command line.
"""

from __future__ import annotations

import os
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import InputError, LvsalError, UnknownNameError

T = TypeVar("T")

PLUGIN_GROUP = "lvsal_data.plugins"
PLUGIN_ENV = "LVSAL_PLUGINS"


def resolve(target: str) -> Any:
    """The object a ``"package.module:attribute"`` string names."""
    module, _, attribute = target.partition(":")
    obj: Any = import_module(module)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """A name -> object table.

    Example:
        >>> KINDS = Registry("kind")
        >>> @KINDS.register("plain")
        ... class Plain: ...
        >>> KINDS.register_lazy("path", "pathlib:Path")
        >>> KINDS["plain"].__name__, KINDS["path"].__name__, KINDS.names()
        ('Plain', 'Path', ['path', 'plain'])
        >>> KINDS["other"]
        Traceback (most recent call last):
        ...
        lvsal_data.errors.UnknownNameError: unknown kind 'other'; valid: path, plain
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}

    def _check_free(self, name: str) -> None:
        if name in self._items or name in self._lazy:
            raise LvsalError(f"{self.kind} {name!r} is already registered")

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator (or call with the object) that registers it under ``name``."""
        self._check_free(name)

        def add(obj: T) -> T:
            self._check_free(name)
            self._items[name] = obj
            return obj

        return add

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"module:attribute"``, imported on first use of ``name``."""
        self._check_free(name)
        if ":" not in target:
            raise LvsalError(f"lazy {self.kind} {name!r} must name 'module:attribute', got {target!r}")
        self._lazy[name] = target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plugin's entry; unknown names raise :class:`UnknownNameError`)."""
        if name in self._lazy:
            del self._lazy[name]
        elif name in self._items:
            del self._items[name]
        else:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")

    def __getitem__(self, name: str) -> T:
        if name in self._lazy:
            self._items[name] = resolve(self._lazy.pop(name))
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items) + len(self._lazy)

    def names(self) -> list[str]:
        return sorted([*self._items, *self._lazy])

    def order(self) -> list[str]:
        """The names in the order they were registered (eager ones first)."""
        return [*self._items, *self._lazy]


#: Decoding strategies (a :class:`lvsal_data.decoding.Decoder` subclass each).
DECODINGS: Registry[Any] = Registry("decoding")
for _name, _target in (("greedy", "base:Greedy"), ("sample", "base:AncestralSampling"), ("sgrs", "sgrs:SGRS"),
                       ("locore", "locore:LocoRE"), ("sgrs+locore", "locore:SGRSLocoRE"), ("guided", "guided:Guided")):
    DECODINGS.register_lazy(_name, f"lvsal_data.decoding.{_target}")

#: Annotated sample sources (a factory ``(arg, **options) -> Source`` each), named in ``--data`` specs.
SOURCES: Registry[Any] = Registry("source")
for _name, _target in (("amber", "amber:AmberSource"), ("coco", "coco:CocoSource"), ("hf", "hf:HFFolderSource"),
                       ("pope", "pope:PopeSource"), ("synthetic", "synthetic:SyntheticSource")):
    SOURCES.register_lazy(_name, f"lvsal_data.sources.{_target}")

_plugins_loaded = False


def load_plugins(force: bool = False) -> list[str]:
    """Import the plugin modules (entry points of group ``lvsal_data.plugins`` and the modules
    named in ``$LVSAL_PLUGINS``) once; returns their names.

    Raises:
        InputError: A named module cannot be imported.
    """
    global _plugins_loaded
    if _plugins_loaded and not force:
        return []
    _plugins_loaded = True
    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()
        loaded.append(ep.value)
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(","))):
        try:
            import_module(module)
        except ImportError as err:
            raise InputError(f"${PLUGIN_ENV} names {module!r}, which cannot be imported: {err}") from None
        loaded.append(module)
    return loaded


__all__ = ["DECODINGS", "PLUGIN_ENV", "PLUGIN_GROUP", "SOURCES", "Registry", "load_plugins", "resolve"]
