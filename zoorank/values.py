"""The one rule for a number in a request, whoever sends it: the library, the CLI (``k=v``
text), an HTML form (text) or JSON. Used by ranking options, ground-truth training settings and
confirmation requests alike."""

from __future__ import annotations

from typing import Any

from zoorank.errors import InvalidInputError


def as_number(value: Any, name: str, kind: type, *, field: str | None = None) -> Any:
    """``value`` as ``kind`` (int or float): numbers as they are, text parsed ("3" -> 3,
    "1e-3" -> 0.001), a whole number written 3.0 counts as an integer (JSON Schema's rule);
    booleans, fractions for an integer and anything else are refused naming ``name``.

    Raises:
        InvalidInputError: with ``field`` (default ``name``).
    """
    field = field or name
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a number, got {value!r}", field=field)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidInputError(f"{name} must be a number, got {value!r}", field=field) from None
    if not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a number, got {value!r}", field=field)
    if kind is int:
        if not float(value).is_integer():
            raise InvalidInputError(f"{name} must be a whole number, got {value!r}", field=field)
        return int(value)
    return float(value)
