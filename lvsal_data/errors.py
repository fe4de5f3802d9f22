"""Exception types. Every user-facing failure is one of these, with a message that says
what was expected, what came in and how to fix it (the CLI prints it as one line)."""

from __future__ import annotations


class LvsalError(Exception):
    """Base class of every error this package raises on purpose."""


class UnsupportedModelError(LvsalError):
    """The model cannot be traced (no eager attention weights, unknown image layout, ...)."""


class InputError(LvsalError):
    """Model inputs or arguments that do not fit the contract (wrong shapes, bad spans, ...)."""


class UnknownNameError(LvsalError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
