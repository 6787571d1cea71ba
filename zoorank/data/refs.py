"""The one parser of dataset reference strings (docs/design.md §4).

Accepted forms: ``builtin:NAME``, ``folder:PATH``, ``npz:PATH``, ``upload:ID``.
Paths must resolve inside one of the allowed data roots (no traversal, no symlink escapes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from zoorank.errors import InvalidInputError

Kind = Literal["builtin", "folder", "npz", "upload"]
_KINDS: tuple[Kind, ...] = ("builtin", "folder", "npz", "upload")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{8,64}$")


def reference_pattern() -> str:
    """What :func:`parse_dataset_ref` accepts, as a regular expression (the API's schema): the
    syntax only; whether the name, path or upload exists is for :func:`load_dataset` to say."""
    return rf"^(builtin:{_NAME.pattern[1:-1]}|upload:{_UPLOAD_ID.pattern[1:-1]}|(folder|npz):[^\x00]+)$"


@dataclass(frozen=True)
class DatasetRef:
    """A parsed reference: ``kind`` and its ``value`` (name, path or upload id)."""

    kind: Kind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_dataset_ref(ref: str) -> DatasetRef:
    """Parse ``ref`` syntactically; raises :class:`InvalidInputError` naming the problem."""
    if not isinstance(ref, str) or ":" not in ref:
        raise InvalidInputError(
            f"dataset reference {ref!r} must look like KIND:VALUE with KIND one of "
            f"{', '.join(_KINDS)} (e.g. builtin:digits)",
            field="dataset",
        )
    kind, value = ref.split(":", 1)
    if kind not in _KINDS:
        raise InvalidInputError(
            f"dataset reference kind {kind!r} is not one of {', '.join(_KINDS)}", field="dataset"
        )
    if not value or "\x00" in value:
        raise InvalidInputError(f"dataset reference {ref!r} has an empty value", field="dataset")
    if kind == "builtin" and not _NAME.match(value):
        raise InvalidInputError(f"builtin dataset name {value!r} is malformed", field="dataset")
    if kind == "upload" and not _UPLOAD_ID.match(value):
        raise InvalidInputError(f"upload id {value!r} must be lowercase hex", field="dataset")
    return DatasetRef(kind=cast(Kind, kind), value=value)


def resolve_under_roots(
    path: str, roots: Sequence[str | Path], *, field: str = "dataset", what: str = "dataset path"
) -> Path:
    """``path`` resolved (symlinks followed) if it lies inside one of ``roots``; else an error
    naming ``field`` (``dataset`` for data, ``models`` for a weight file)."""
    if not roots:
        raise InvalidInputError(
            "no data roots are configured; set ZOORANK_DATA_ROOTS to the folders datasets may be read from",
            field=field,
        )
    if "\x00" in path:
        raise InvalidInputError(f"{what} {path!r} has a NUL character", field=field)
    try:
        resolved = Path(path).expanduser().resolve()
    except RuntimeError as exc:  # "~user" naming no user, or "~" with no home directory
        raise InvalidInputError(f"{what} {path!r}: {exc}", field=field) from None
    for root in roots:
        root_resolved = Path(root).expanduser().resolve()
        if resolved == root_resolved or root_resolved in resolved.parents:
            return resolved
    raise InvalidInputError(
        f"{what} {path!r} is outside the allowed data roots ({', '.join(str(r) for r in roots)}): "
        "move it under one, or add its folder to ZOORANK_DATA_ROOTS (the CLI also takes --data-root)",
        field=field,
    )
