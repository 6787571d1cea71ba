"""One Settings class (pydantic-settings, env prefix ``ZOORANK_``), docs/design.md §3.

Embedded defaults need no server: SQLite under ``./var/``, and a Celery broker on kombu's
filesystem transport under ``./var/broker``. Production: ``ZOORANK_DATABASE_URL=
postgresql+psycopg://...`` and ``ZOORANK_BROKER_URL=redis://...``. Every path default is
derived from ``ZOORANK_VAR_DIR`` (made absolute, so the API and its worker processes agree).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from zoorank_app.keys import parse_hashes

from zoorank.settings import CoreSettings, split_list

QueueName = Literal["gpu", "cpu"]  # app.celery_client.QUEUES


def _both_queues() -> list[QueueName]:
    return ["gpu", "cpu"]


class Settings(CoreSettings):
    """:class:`zoorank.settings.CoreSettings` (paths, device, offline) and the service's own."""

    # A refused value is not echoed: it may be a key (or a URL with a password).
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    database_url: str = ""
    broker_url: str = "filesystem://localhost//"
    result_backend: str = ""
    # Access (app.keys, app.access). Keys are stored hashed, here ([NAME:]sha256:<hex>) and/or
    # in API_KEYS_FILE (NAME:sha256:<hex> a line, re-read when it changes); either set: writes
    # need a key, and PROTECT_READS makes every read need one too (not /healthz, /readyz).
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None
    protect_reads: bool = False
    # RATE_LIMIT: requests a minute per key (anonymous: per client address), bursts of as many;
    # 0: off. 600: a job page polls once a second at most (60) and people or scripts that wait
    # between calls never meet it, while a loop that does not wait is held to 10 a second.
    rate_limit: int = Field(default=600, ge=0)
    # RATE_LIMIT_URL: a Redis URL where every API process counts together (app.ratelimit);
    # empty: each process counts on its own, so N replicas allow N times RATE_LIMIT.
    rate_limit_url: str = ""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)  # empty: no CORS
    max_request_kb: int = Field(default=256, gt=0)  # request bodies other than uploads
    max_upload_mb: int = 200
    max_archive_files: int = 100_000
    worker_concurrency: int = 1
    # `zoorank serve`'s API processes (uvicorn workers on one socket; /metrics sums them).
    api_workers: int = Field(default=1, ge=1)
    # The queues a worker consumes (app.celery_client): `gpu` (forward passes), `cpu` (scores
    # on cached arrays); both by default, so one worker does everything.
    worker_queues: Annotated[list[QueueName], NoDecode] = Field(default_factory=_both_queues, min_length=1)
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
    # message is lost is sent again: at once when the broker restarted (Redis run_id), else
    # after RESEND_AFTER seconds with its work in no queue; a job whose models all ended is closed.
    sweep_interval: float = Field(default=30.0, ge=0)
    stale_after: float = Field(default=60.0, gt=0)
    resend_after: float = Field(default=300.0, gt=0)

    @property
    def task_time_limit(self) -> int:
        return self.task_soft_time_limit + 120

    @property
    def visibility_timeout(self) -> int:
        return self.task_time_limit + 300

    @field_validator("api_keys", "cors_origins", "worker_queues", mode="before")
    @classmethod
    def _comma_separated_keys(cls, value: object) -> object:
        return split_list(value)

    @field_validator("api_keys")
    @classmethod
    def _hashed_keys(cls, value: list[str]) -> list[str]:
        parse_hashes(value)
        return value

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(
                    f"CORS origin {origin!r} is not scheme://host[:port] (no path, no trailing /)"
                )
        return value

    @field_validator("rate_limit_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value and value.split("://", 1)[0] not in ("redis", "rediss", "unix"):
            # not echoed: the URL may hold a password
            raise ValueError("not a Redis URL (redis://, rediss:// or unix://); empty: count in each process")
        return value

    @model_validator(mode="after")
    def _reads_need_keys(self) -> Settings:
        if self.protect_reads and not (self.api_keys or self.api_keys_file):
            raise ValueError("ZOORANK_PROTECT_READS needs ZOORANK_API_KEYS or ZOORANK_API_KEYS_FILE")
        return self

    def derive(self) -> None:
        super().derive()
        self.database_url = self.database_url or f"sqlite:///{self.var_dir}/zoorank.db"
        if self.api_keys_file is not None:
            self.api_keys_file = self.api_keys_file.expanduser().resolve()
        self.result_backend = self.result_backend or self._default_result_backend()

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
