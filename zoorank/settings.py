"""The settings the library and every entry point share (pydantic-settings, prefix ``ZOORANK_``).

One object for the CLI and the service: ``app.settings.Settings`` extends :class:`CoreSettings`
with what only the service needs (database, broker, uploads), so ``zoorank rank`` on a laptop
and a worker in production read the same variables with the same defaults (docs/design.md §3).
"""

from __future__ import annotations

import os
import typing
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from zoorank.errors import InvalidInputError

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")


def check_device(value: object, *, source: str, field: str = "device") -> Device:
    """``value`` if it names a device (auto, cpu or cuda); else an error naming ``source``."""
    if value not in DEVICES:
        raise InvalidInputError(f"{source} must be auto, cpu or cuda, got {value!r}", field=field)
    return typing.cast(Device, value)


def default_device() -> Device:
    """The device for work that asks for ``auto``: ``ZOORANK_DEVICE`` (unset: ``auto``, a GPU
    when one is visible). One rule for the library (:func:`zoorank.features.extract.resolve_device`,
    so ``zoorank rank``, ``explain`` and ``validate``) and the service (``CoreSettings.device``).

    Raises:
        InvalidInputError: ``ZOORANK_DEVICE`` is not auto, cpu or cuda.
    """
    return check_device(os.environ.get("ZOORANK_DEVICE", "auto"), source="ZOORANK_DEVICE")


def split_list(value: object) -> object:
    """``a,b;c`` -> ``["a", "b", "c"]`` (lists from the environment are comma-separated)."""
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return value


class CoreSettings(BaseSettings):
    """Paths, device and network policy: what ``zoorank rank`` needs with no server."""

    model_config = SettingsConfigDict(env_prefix="ZOORANK_", extra="ignore")

    var_dir: Path = Path("var")
    cache_dir: Path = Path()  # empty: VAR_DIR/cache
    # Bound of the feature cache, least recently used entries evicted first (0: no bound). An
    # entry is 30-40 MB for a default job (500 images at 64 px) and ~360 MB for 200 images at
    # 224 px: 5 GB keeps a whole 8-model zoo at 224 px, or about 18 default jobs.
    cache_max_mb: int = Field(default=5120, ge=0)
    # Folders that ``folder:``/``npz:`` references and weight files may come from; empty:
    # VAR_DIR/data. The CLI's ``--data-root`` adds folders for one command.
    data_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Where the service stores uploaded datasets (``upload:ID``); empty: VAR_DIR/uploads. Here, not
    # in the service's settings, so ``zoorank rank upload:ID`` reads what the server stored.
    upload_dir: Path = Path()
    device: Device = "auto"  # ZOORANK_DEVICE, by the rule of default_device()
    # Offline: timm and the Hugging Face hub read only their local cache (on in tests, CI and
    # the demo; off by default so the documented ``timm``/``timm:HUB_ID`` sources download).
    offline: bool = False

    @field_validator("data_roots", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return split_list(value)

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: object) -> Device:
        return check_device(value, source="ZOORANK_DEVICE")

    @model_validator(mode="after")
    def _derive_paths(self) -> CoreSettings:
        self.derive()
        return self

    def derive(self) -> None:
        """Defaults that follow from others; every path made absolute, so that processes
        started elsewhere (API, workers, CLI) agree."""
        self.var_dir = self.var_dir.expanduser().resolve()
        if self.cache_dir == Path():
            self.cache_dir = self.var_dir / "cache"
        self.cache_dir = self.cache_dir.expanduser().resolve()
        self.data_roots = [p.expanduser().resolve() for p in self.data_roots] or [self.var_dir / "data"]
        if self.upload_dir == Path():
            self.upload_dir = self.var_dir / "uploads"
        self.upload_dir = self.upload_dir.expanduser().resolve()

    def apply_network_policy(self) -> None:
        """Call at an entry point, before timm or huggingface_hub are imported (they read the
        environment once, at import)."""
        if self.offline:
            os.environ["HF_HUB_OFFLINE"] = "1"


@lru_cache
def get_core_settings() -> CoreSettings:
    return CoreSettings()


class ClientSettings(BaseSettings):
    """What the CLI's client of a running server reads (``zoorank jobs``, ``submit``, ...)."""

    model_config = SettingsConfigDict(env_prefix="ZOORANK_", extra="ignore")

    server: str = "http://127.0.0.1:8000"  # ZOORANK_SERVER; --server overrides it
    api_key: SecretStr = SecretStr("")  # ZOORANK_API_KEY: sent as the bearer key when set

    @field_validator("server")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"--server / ZOORANK_SERVER must be a URL starting with http:// or https://, got {value!r}"
            )
        return value.rstrip("/")

    @classmethod
    def load(cls, server: str | None = None) -> ClientSettings:
        """The environment's settings, ``server`` (``--server``) over ``ZOORANK_SERVER``."""
        return cls(server=server) if server else cls()


def enter_offline_by_default() -> CoreSettings:
    """The network policy of an entry point that runs offline unless told otherwise (the
    benchmarks, the tests): ``ZOORANK_OFFLINE`` defaults to on here, then
    :meth:`CoreSettings.apply_network_policy`. Call it first thing in ``main``, never at import."""
    os.environ.setdefault("ZOORANK_OFFLINE", "1")
    settings = CoreSettings()
    settings.apply_network_policy()
    return settings
