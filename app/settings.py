"""One Settings class (pydantic-settings, env prefix ``ZOORANK_``), DESIGN §3.

Embedded defaults need no server: SQLite under ``./var/``, and a Celery broker on kombu's
filesystem transport under ``./var/broker``. Production: ``ZOORANK_DATABASE_URL=
postgresql+psycopg://...`` and ``ZOORANK_BROKER_URL=redis://...``. Every path default is
derived from ``ZOORANK_VAR_DIR`` (made absolute, so the API and its worker processes agree).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZOORANK_", extra="ignore")

    var_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = "filesystem://localhost//"
    result_backend: str = ""
    cache_dir: Path = Path()  # empty: VAR_DIR/cache
    upload_dir: Path = Path()  # empty: VAR_DIR/uploads
    data_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_upload_mb: int = 200
    max_archive_files: int = 100_000
    worker_concurrency: int = 1
    auto_migrate: bool = True
    # One model's task: past the soft limit it stops at its next batch or score and the model
    # is marked failed with the reason; the hard limit (soft + 120 s) kills a task stuck inside
    # one call. The Redis visibility timeout is set above the hard limit, so a running task is
    # never redelivered to a second worker while it still runs.
    task_soft_time_limit: int = Field(default=3600, ge=1)
    log_format: Literal["text", "json"] = "text"  # json: one object per line, with job/task ids
    # The database is the record of the work (app.sweeper, run by the API every
    # SWEEP_INTERVAL seconds; 0: never): a running model whose task has not written a
    # heartbeat for STALE_AFTER seconds lost its worker and is sent again; a queued model whose
    # message is in no queue (a broker restarted without its data) is sent again after
    # RESEND_AFTER seconds; a job whose models all ended is closed.
    sweep_interval: float = Field(default=30.0, ge=0)
    stale_after: float = Field(default=60.0, gt=0)
    resend_after: float = Field(default=300.0, gt=0)

    @property
    def task_time_limit(self) -> int:
        return self.task_soft_time_limit + 120

    @property
    def visibility_timeout(self) -> int:
        return self.task_time_limit + 300

    @field_validator("data_roots", "api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split(value)

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.var_dir = self.var_dir.expanduser().resolve()
        self.database_url = self.database_url or f"sqlite:///{self.var_dir}/zoorank.db"
        if self.cache_dir == Path():
            self.cache_dir = self.var_dir / "cache"
        if self.upload_dir == Path():
            self.upload_dir = self.var_dir / "uploads"
        self.cache_dir = self.cache_dir.expanduser().resolve()
        self.upload_dir = self.upload_dir.expanduser().resolve()
        self.data_roots = [p.expanduser().resolve() for p in self.data_roots] or [self.var_dir / "data"]
        self.result_backend = self.result_backend or self._default_result_backend()
        return self

    def _default_result_backend(self) -> str:
        """Redis beside a Redis broker, else a SQLite file under ``var_dir``."""
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return f"db+sqlite:///{self.var_dir}/celery-results.db"

    @property
    def broker_folder(self) -> Path:
        return self.var_dir / "broker"

    def ensure_dirs(self) -> None:
        for folder in (self.var_dir, self.cache_dir, self.upload_dir, *self.data_roots):
            Path(folder).mkdir(parents=True, exist_ok=True)
        if self.broker_url.startswith("filesystem://"):
            for sub in ("in", "processed"):
                (self.broker_folder / sub).mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
