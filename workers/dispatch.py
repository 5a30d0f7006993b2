"""Sending jobs to the workers: the API calls :func:`enqueue_job` after committing a ``Job``."""

from __future__ import annotations

import logging

from celery import chain
from sqlalchemy import update

from synthcohort.core.errors import NotFoundError
from synthcohort.core.settings import get_settings
from synthcohort.store.db import Job, JobStatus, session_factory
from synthcohort.workers.celery_app import ensure_configured, is_embedded_broker
from synthcohort.workers.lease import heartbeat_age_s, stale_s
from synthcohort.workers.tasks import STAGE_TASKS, job_plan

log = logging.getLogger(__name__)


def enqueue_job(job_id: str) -> str:
    """Send the task chain for the job's kind (import | train | sample → validate, with a
    train stage first when a cohort names no model); returns the Celery id of its last task.

    Stages already done are skipped by the tasks themselves, so sending a job again (after a
    crash) is safe."""

    ensure_configured()
    factory = session_factory()
    with factory() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} not found", field="job_id")
        plan = job_plan(job)
    signatures = [STAGE_TASKS[stage].si(job_id) for stage in plan]
    result = (chain(*signatures) if len(signatures) > 1 else signatures[0]).apply_async()
    with factory() as s:
        job = s.get(Job, job_id)
        job.celery_task_id = result.id
        s.commit()
    log.info("job %s: sent %s as %s", job_id, " → ".join(plan), result.id)
    return result.id


def recover_orphaned_jobs() -> list[str]:
    """Re-send jobs a dead worker left ``running`` (embedded broker only).

    The embedded SQLAlchemy broker drops a message whose worker was killed (it marks it
    invisible on delivery and only restores it on a clean shutdown), so at worker start the
    DB's ``running`` jobs are sent again. A job whose holder is still alive is not harmed: the
    copy finds it claimed and waits (:mod:`workers.lease`). With Redis the broker itself
    redelivers after its visibility timeout and this does nothing.
    """
    if not is_embedded_broker(get_settings().celery_broker_url()):
        return []
    with session_factory()() as s:
        jobs = s.query(Job).filter(Job.status == JobStatus.running).all()
        orphans = [j.id for j in jobs]
        stale = {j.id: heartbeat_age_s(j) >= stale_s() for j in jobs}
    for job_id in orphans:
        log.warning("job %s: left running by a stopped worker (heartbeat stale: %s); sending it again",
                    job_id, stale[job_id])
        enqueue_job(job_id)
    return orphans


def requeue_stale_jobs() -> list[str]:
    """Take over stages whose holder died: a ``running`` job whose heartbeat is older than
    ``stale_s()`` goes back to ``queued`` at the same stage and its chain is sent again.

    Every live worker runs this every few seconds (:class:`workers.health.WorkerBeat`), on
    both brokers: the embedded broker lost the message with its worker, and Redis would only
    redeliver it after its visibility timeout. The update is optimistic (same ``attempts``,
    same ``updated_at``), so two sweeping workers send a job once; a holder that was only slow
    finds its claim gone at its next heartbeat and stops (:mod:`workers.lease`)."""
    limit = stale_s()
    sent: list[str] = []
    factory = session_factory()
    with factory() as s:
        jobs = [(j.id, j.attempts, j.updated_at) for j in s.query(Job).filter(Job.status == JobStatus.running)
                if heartbeat_age_s(j) >= limit]
    for job_id, attempts, updated_at in jobs:
        with factory() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.running,
                                              Job.attempts == attempts, Job.updated_at == updated_at)
                            .values(status=JobStatus.queued))
            s.commit()
        if res.rowcount == 1:
            log.warning("job %s: its worker stopped beating %.0f s ago; taking the stage over", job_id, limit)
            enqueue_job(job_id)
            sent.append(job_id)
    return sent
