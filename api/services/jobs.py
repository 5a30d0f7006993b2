"""Jobs: idempotent creation (one job per owner and Idempotency-Key), hand-off to the workers,
status views and cancellation.

Creation commits the Job row and its target row (Cohort, ModelRecordRow) in one transaction,
*then* calls ``workers.dispatch.enqueue_job`` so a worker never sees a job that is not in the
database. If the broker cannot be reached the job stays ``queued`` without a Celery task id and
the client gets 503; a retry with the same Idempotency-Key sends it again (never a second job).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from synthcohort.api.errors import Conflict, ServiceUnavailable
from synthcohort.api.services.access import get_visible, visible
from synthcohort.store.db import (
    ApiKey,
    Cohort,
    CohortStatus,
    Job,
    JobKind,
    JobStatus,
    ModelRecordRow,
    utcnow,
)
from synthcohort.workers.dispatch import enqueue_job

log = logging.getLogger(__name__)

FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


def new_id(prefix: str) -> str:
    """``job-``/``coh-`` + 24 random hex digits (model ids come from ``generators.training``)."""
    return f"{prefix}-{secrets.token_hex(12)}"


def request_hash(kind: str, body: dict[str, Any]) -> str:
    """sha256 of the endpoint and the validated body, to tell a retry from a different request."""
    canonical = json.dumps({"kind": kind, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_replay(session: Session, key: ApiKey, idempotency_key: str, req_hash: str) -> Job | None:
    """The job this key already started with this Idempotency-Key; 409 if the body differed."""
    job = session.scalar(select(Job).where(Job.owner_id == key.id, Job.idempotency_key == idempotency_key))
    if job is not None and job.request_hash != req_hash:
        raise Conflict(
            "this Idempotency-Key was already used with a different request; use a new key",
            field="Idempotency-Key",
        )
    return job


def submit(session: Session, job: Job, targets: Sequence[Any] = ()) -> tuple[Job, bool]:
    """Commit ``job`` and its target rows together, then enqueue it.

    Returns ``(job, replayed)``: when a concurrent request with the same Idempotency-Key won
    the race, that request's job comes back with ``replayed=True`` and nothing is added.
    """
    owner_id, idem, req_hash = job.owner_id, job.idempotency_key, job.request_hash
    try:
        session.add(job)
        session.flush()  # the job first: target rows reference it
        session.add_all(targets)
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = session.scalar(select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == idem))
        if existing is None:
            raise
        if existing.request_hash != req_hash:
            raise Conflict("this Idempotency-Key was already used with a different request; use a new key",
                           field="Idempotency-Key") from None
        ensure_dispatched(session, existing)
        return existing, True
    dispatch(session, job)
    return job, False


def ensure_dispatched(session: Session, job: Job) -> None:
    """Re-send a replayed job whose first enqueue failed (queued, no Celery task id)."""
    if job.status == JobStatus.queued and job.celery_task_id is None and not job.cancel_requested:
        dispatch(session, job)


def dispatch(session: Session, job: Job) -> None:
    """Hand the job to the workers (``workers.dispatch.enqueue_job``) and record the task id."""
    try:
        task_id = enqueue_job(job.id)
    except Exception as exc:  # the broker is down or misconfigured: the job waits for a retry
        log.exception("could not enqueue job %s", job.id)
        raise ServiceUnavailable(
            f"job {job.id} is recorded but could not be queued ({type(exc).__name__}: {exc}); "
            "retry the request with the same Idempotency-Key",
            field="job_id",
        ) from exc
    session.refresh(job)
    if task_id and job.celery_task_id != task_id:
        job.celery_task_id = str(task_id)
        session.commit()


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind.value, "status": job.status.value, "stage": job.stage,
        "percent": float(job.percent or 0.0), "eta_s": job.eta_s, "metrics": job.metrics or {},
        "error": job.error, "target_id": job.target_id, "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def list_query(key: ApiKey):
    return visible(select(Job), Job, key).order_by(Job.created_at.desc(), Job.id)


def get_job(session: Session, key: ApiKey, job_id: str) -> Job:
    return get_visible(session, Job, job_id, key, field="job_id")


def cancel_job(session: Session, key: ApiKey, job_id: str) -> Job:
    """Ask a job to stop. A queued job is cancelled at once (with its cohort/model; a worker
    that later receives its message finds it finished and skips it); a running one stops at
    the worker's next check of ``cancel_requested``. Finished jobs: 409."""
    job = get_job(session, key, job_id)
    if job.status in FINISHED:
        raise Conflict(f"job {job.id} already {job.status.value}; nothing to cancel", field="job_id")
    # Conditional updates: a worker may claim the job (queued → running) at this moment.
    res = session.execute(
        update(Job).where(Job.id == job.id, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, cancel_requested=True, error=f"cancelled by {key.name}",
                updated_at=utcnow())
    )
    if res.rowcount == 1:
        _cancel_targets(session, job)
    else:
        session.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    return job


def _cancel_targets(session: Session, job: Job) -> None:
    if job.kind == JobKind.cohort and job.target_id:
        cohort = session.get(Cohort, job.target_id)
        if cohort is not None:
            cohort.status = CohortStatus.cancelled
    elif job.kind == JobKind.train and job.target_id:
        model = session.get(ModelRecordRow, job.target_id)
        if model is not None:
            model.status = JobStatus.cancelled

