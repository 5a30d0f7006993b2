"""Metadata database: SQLAlchemy 2 models for datasets, models, cohorts, samples, reviews,
jobs and API keys. SQLite by default (in the data root), PostgreSQL supported.

Files (arrays, checkpoints, reports, archives) live under the data root; rows here point at
them and record who asked for what, so the audit trail of every sample is queryable.
The schema is created and migrated with Alembic (``store/migrations``).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

from synthcohort.core.settings import get_settings


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Role(str, enum.Enum):
    requester = "requester"
    reviewer = "reviewer"
    admin = "admin"


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class JobKind(str, enum.Enum):
    import_dataset = "import"
    train = "train"
    cohort = "cohort"  # sample (+ train when no model given) + validate


class CohortStatus(str, enum.Enum):
    queued = "queued"
    training = "training"
    sampling = "sampling"
    validating = "validating"
    ready = "ready"  # validated; see verdict
    failed = "failed"
    cancelled = "cancelled"


class Verdict(str, enum.Enum):
    passed = "passed"
    failed = "failed"
    needs_review = "needs_review"


class SampleState(str, enum.Enum):
    released = "released"  # passed validation with no flag, or approved by a reviewer
    held = "held"  # flagged: waits for a reviewer
    rejected = "rejected"  # rejected by a reviewer, or cohort failed validation


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # sha256 hex
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings; not secret
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner_id", "idempotency_key", name="uq_job_idempotency"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # job-<hex>
    kind: Mapped[JobKind] = mapped_column(Enum(JobKind, native_enum=False, length=20))
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=20), default=JobStatus.queued, index=True
    )
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the validated request body
    target_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # ds-/mdl-/coh- id
    stage: Mapped[str | None] = mapped_column(String(40), nullable=True)
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    eta_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # latest losses etc.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    celery_task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # deliveries to a worker
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class DatasetRecord(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ds-<sha256 prefix>
    name: Mapped[str] = mapped_column(String(200))
    modality: Mapped[str] = mapped_column(String(20))
    spatial_dims: Mapped[int] = mapped_column(Integer)
    classes: Mapped[list[Any]] = mapped_column(JSON)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)  # the store's DatasetMeta, verbatim
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)  # first importer
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # An admin shared it with every key (api/services/access.py); else only grantees see it.
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    shared_by: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    shared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DatasetGrant(Base):
    """A key that imported this dataset version (content addressed: several may have)."""

    __tablename__ = "dataset_grants"
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelRecordRow(Base):
    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # mdl-<hex>
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    class_name: Mapped[str] = mapped_column(String(200))
    generator: Mapped[str] = mapped_column(String(40))
    steps: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    mask_conditioned: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(Enum(JobStatus, native_enum=False, length=20), default=JobStatus.queued)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Cohort(Base):
    __tablename__ = "cohorts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # coh-<hex>
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"), nullable=True)
    class_name: Mapped[str] = mapped_column(String(200))
    generator: Mapped[str] = mapped_column(String(40))
    count: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(10), default="png")
    status: Mapped[CohortStatus] = mapped_column(
        Enum(CohortStatus, native_enum=False, length=20), default=CohortStatus.queued
    )
    verdict: Mapped[Verdict | None] = mapped_column(Enum(Verdict, native_enum=False, length=20), nullable=True)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    samples: Mapped[list[Sample]] = relationship(back_populates="cohort", order_by="Sample.index")


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("cohort_id", "index", name="uq_sample_index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[str] = mapped_column(ForeignKey("cohorts.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    file: Mapped[str] = mapped_column(String(300))  # relative to the cohort's samples/ dir
    mask_file: Mapped[str | None] = mapped_column(String(300), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{kind, reason, score}]
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # nearest-train distances...
    state: Mapped[SampleState] = mapped_column(Enum(SampleState, native_enum=False, length=20))
    cohort: Mapped[Cohort] = relationship(back_populates="samples")
    reviews: Mapped[list[Review]] = relationship(back_populates="sample", order_by="Review.id")


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("reviewer_id", "idempotency_key", name="uq_review_idempotency"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"), index=True)
    decision: Mapped[str] = mapped_column(String(10))  # approve | reject | reset (undo: back to held)
    # near_copy | artefact | implausible_anatomy | wrong_class | other (api.schemas.ReasonCode)
    reason_code: Mapped[str | None] = mapped_column(String(30), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    reviewer_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A retried POST .../review with the same Idempotency-Key returns this row (api/).
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sample: Mapped[Sample] = relationship(back_populates="reviews")


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per URL per process. SQLite gets WAL and a busy timeout because the API
    and a worker process write to the same file."""
    if url.startswith("sqlite"):

        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url or get_settings().sqlalchemy_url()), expire_on_commit=False)
