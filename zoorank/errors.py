"""Errors raised by the core. Each says what was expected, what came, and how to fix it."""

from __future__ import annotations


class ZoorankError(Exception):
    """Base class of every error zoorank raises on purpose."""


class InvalidInputError(ZoorankError, ValueError):
    """Input the caller can fix: a bad array, reference, name or parameter.

    ``field`` names the offending input (``"dataset"``, ``"models"``, ``"features"``, ...) so
    the CLI, Python and HTTP layers can all point at it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownNameError(InvalidInputError, KeyError):
    """A model, score or dataset name that no registry holds."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConflictError(InvalidInputError):
    """A name that is already taken (a model registered twice)."""


class Cancelled(ZoorankError):
    """The caller asked the work to stop (a cancelled job): raised between batches and
    between scores, never recorded as the model's failure."""


class TooLargeError(InvalidInputError):
    """Input over a size limit (an upload larger than allowed)."""
