"""One Settings class (pydantic-settings, env prefix ``ZOORANK_``), DESIGN §3.

Embedded defaults need no server: SQLite under ``./var/``, and a Celery broker on kombu's
filesystem transport under ``./var/broker``. Production: ``ZOORANK_DATABASE_URL=
postgresql+psycopg://...`` and ``ZOORANK_BROKER_URL=redis://...``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

VAR_DIR = Path("var")


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZOORANK_", extra="ignore")

    database_url: str = f"sqlite:///./{VAR_DIR}/zoorank.db"
    broker_url: str = "filesystem://"
    result_backend: str | None = None
    cache_dir: Path = VAR_DIR / "cache"
    upload_dir: Path = VAR_DIR / "uploads"
    data_roots: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [VAR_DIR / "data"])
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_upload_mb: int = 200
    max_archive_files: int = 100_000
    worker_concurrency: int = 1
    auto_migrate: bool = True

    @field_validator("data_roots", "api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split(value)

    @property
    def broker_folder(self) -> Path:
        return VAR_DIR / "broker"

    @property
    def effective_result_backend(self) -> str:
        """Celery result backend: explicit, else Redis beside a Redis broker, else SQLite."""
        if self.result_backend:
            return self.result_backend
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return f"db+sqlite:///{VAR_DIR.resolve()}/celery-results.db"

    def ensure_dirs(self) -> None:
        for folder in (VAR_DIR, self.cache_dir, self.upload_dir, *self.data_roots):
            Path(folder).mkdir(parents=True, exist_ok=True)
        if self.broker_url.startswith("filesystem://"):
            for sub in ("in", "processed"):
                (self.broker_folder / sub).mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
