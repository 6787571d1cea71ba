"""API keys, stored only as hashes: make one, hash one, check one; the key file; ``keys_app``,
the ``zoorank keys`` commands.

A key is ``zrk_`` and 43 URL-safe characters from :func:`secrets.token_urlsafe` (256 random
bits). What is stored is ``sha256:<64 hex>`` of it, never the key: in ``ZOORANK_API_KEYS``
(``[NAME:]sha256:<hex>``, comma-separated) and/or in the key file ``ZOORANK_API_KEYS_FILE``
(one ``NAME:sha256:<hex>`` a line; ``#`` comments and blank lines are skipped). Removing a
line revokes that key; the API re-reads the file when it changes.

A plain SHA-256 is enough here, with no salt and no slow KDF (bcrypt, scrypt, argon2): those
defend passwords people choose, which are few enough to try one by one. A key of 256 random
bits cannot be found from its hash by trying keys, salted or not, so a slow hash would only
cost every request its time. Keys that people make up are why :func:`hash_key` refuses short
ones.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

log = logging.getLogger(__name__)

KEY_PREFIX = "zrk_"
MIN_KEY_LENGTH = 32  # characters of a key brought to `zoorank keys hash`
HASH_PATTERN = r"sha256:[0-9a-f]{64}"
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_ENTRY = re.compile(rf"(?:(?P<name>{NAME_PATTERN}):)?(?P<hash>{HASH_PATTERN})")
_FILE_LINE = re.compile(rf"(?P<name>{NAME_PATTERN}):(?P<hash>{HASH_PATTERN})")
HOW_TO_HASH = (
    "make a key with `zoorank keys new NAME` (it stores the hash in ZOORANK_API_KEYS_FILE), or "
    "hash one you have with `zoorank keys hash` (reads the key from stdin)"
)


class KeyFileError(ValueError):
    """The key file cannot be used; the message names the line, never its content."""


@dataclass(frozen=True)
class KeyEntry:
    name: str
    hash: str


def _digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_key(key: str) -> str:
    """``sha256:<hex>`` of ``key``; refuses a key shorter than :data:`MIN_KEY_LENGTH`."""
    key = key.strip()
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"a key of {len(key)} characters is too short to be stored with a fast hash (at least "
            f"{MIN_KEY_LENGTH}); make a random one with `zoorank keys new NAME`"
        )
    return _digest(key)


def new_key(name: str) -> tuple[str, str]:
    """A fresh key for ``name``: ``(plain key, key-file line "NAME:sha256:<hex>")``."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"a key name is 1 to 64 of A-Z a-z 0-9 _ . - (got {name!r})")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    return plain, f"{name}:{hash_key(plain)}"


def verify(token: str, hashed: str) -> bool:
    """Whether ``token`` is the key whose hash is ``hashed`` (constant-time comparison)."""
    return hmac.compare_digest(_digest(token), hashed)


def parse_hashes(values: list[str]) -> list[KeyEntry]:
    """The entries of ``ZOORANK_API_KEYS``, each ``[NAME:]sha256:<hex>`` (unnamed: ``key-``
    and the hash's first 8 digits); a plain key there is refused, and not quoted."""
    entries = []
    for number, value in enumerate(values, start=1):
        found = _ENTRY.fullmatch(value.strip())
        if found is None:
            raise ValueError(
                f"entry {number} of ZOORANK_API_KEYS is not a key hash ([NAME:]sha256:<64 hex "
                f"digits>): keys are stored hashed; {HOW_TO_HASH}"
            )
        entries.append(KeyEntry(found["name"] or f"key-{found['hash'][7:15]}", found["hash"]))
    return entries


def read_key_file(path: Path) -> list[KeyEntry]:
    """The entries of a key file; :class:`KeyFileError` names the first bad line by number."""
    entries: list[KeyEntry] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _FILE_LINE.fullmatch(line.strip())
        if found is None:
            # The line itself is not quoted: it may be a plain key pasted by mistake.
            raise KeyFileError(f"line {number} of {path} is not NAME:sha256:<64 hex digits>; {HOW_TO_HASH}")
        if any(e.name == found["name"] for e in entries):
            raise KeyFileError(f"line {number} of {path}: the name {found['name']!r} is used twice")
        entries.append(KeyEntry(found["name"], found["hash"]))
    return entries


class KeyRing:
    """The keys the API accepts: those of ``ZOORANK_API_KEYS`` and of the key file, the file
    re-read whenever it changes (so ``zoorank keys new`` and revocations need no restart).

    A changed file that cannot be read is not applied: the previous keys stay, and the error is
    logged at each check until the file is fixed; a file that was removed holds no keys.
    """

    def __init__(self, hashes: list[str], file: Path | None = None) -> None:
        """Raises :class:`KeyFileError` when ``file`` is given but missing or malformed (a
        mistyped path must not leave the API open)."""
        self._fixed = parse_hashes(hashes)
        self.file = file
        self._from_file: list[KeyEntry] = []
        self._stamp: tuple[int, int, int] | None = None
        if file is not None:
            if not file.is_file():
                raise KeyFileError(f"ZOORANK_API_KEYS_FILE {file} does not exist; {HOW_TO_HASH}")
            self._stamp = self._stamp_of(file)
            self._from_file = read_key_file(file)

    @property
    def required(self) -> bool:
        """Whether keys are configured (then writes need one), even if none is left."""
        return bool(self._fixed) or self.file is not None

    def entries(self) -> list[KeyEntry]:
        if self.file is not None:
            self._reload()
        return self._fixed + self._from_file

    def match(self, token: str) -> KeyEntry | None:
        """The entry ``token`` is the key of, or None; compares against every entry."""
        if not token:
            return None
        digest = _digest(token)
        found = None
        for entry in self.entries():
            if hmac.compare_digest(digest, entry.hash) and found is None:
                found = entry
        return found

    def _reload(self) -> None:
        assert self.file is not None
        try:
            stamp = self._stamp_of(self.file)
        except FileNotFoundError:
            if self._stamp is not None:
                log.warning("the API key file %s was removed: no key in it is accepted", self.file)
            self._from_file, self._stamp = [], None
            return
        if stamp == self._stamp:
            return
        try:
            entries = read_key_file(self.file)
        except (KeyFileError, OSError, UnicodeDecodeError) as exc:
            log.error("the API key file changed but is not applied (previous keys stay): %s", exc)
            return
        self._from_file, self._stamp = entries, stamp
        log.info("API keys: %d from %s", len(entries), self.file)

    @staticmethod
    def _stamp_of(path: Path) -> tuple[int, int, int]:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size, stat.st_ino


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to the key file, created readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as out:
        if out.tell() > 0 and not path.read_bytes().endswith(b"\n"):
            out.write("\n")
        out.write(line + "\n")


keys_app = typer.Typer(no_args_is_help=True, help="API keys, stored as hashes only.")


@keys_app.command("new")
def new_command(name: str = typer.Argument(..., help="who or what the key is for")) -> None:
    """Make a key: print it once, append its hash to ZOORANK_API_KEYS_FILE."""
    from zoorank_app.settings import Settings

    path = Settings().api_keys_file
    if path is None:
        typer.echo("set ZOORANK_API_KEYS_FILE to the key file the API reads", err=True)
        raise typer.Exit(2)
    try:
        existing = read_key_file(path) if path.exists() else []
        plain, line = new_key(name)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if any(e.name == name for e in existing):
        typer.echo(f"{path} has a key named {name!r}: remove its line to revoke it first", err=True)
        raise typer.Exit(2)
    append_line(path, line)
    typer.echo(plain)
    typer.echo(f"its hash is stored as {name!r} in {path}; the key is not shown again", err=True)


@keys_app.command("hash")
def hash_command() -> None:
    """Read a key from stdin; print the hash to put in ZOORANK_API_KEYS or the key file."""
    key = typer.prompt("API key", hide_input=True) if sys.stdin.isatty() else sys.stdin.read()
    try:
        typer.echo(hash_key(key))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
