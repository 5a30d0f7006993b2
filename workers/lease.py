"""Who is working on a job right now: a claim on the ``Job`` row plus a heartbeat.

Why: with ``acks_late`` a message can reach a second worker while the first still runs it
(Redis redelivers after its visibility timeout; the embedded broker's orphans are re-enqueued
at worker start). The DB row arbitrates. A worker *claims* a stage by an optimistic update
of the row (``attempts`` is the version number: the update only lands if nobody claimed it
since we read it), then keeps ``updated_at`` fresh every :data:`HEARTBEAT_S` seconds. A job
is claimable when it waits (``queued``) or when its holder's heartbeat is older than
:data:`STALE_S` (the holder died). Between the stages of a chain the job goes back to
``queued`` with the next stage's name.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from synthcohort.core.errors import NotFoundError
from synthcohort.core.settings import get_settings
from synthcohort.store.db import Job, JobStatus, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_S = 3.0  # at most; a fifth of the stale age when that is shorter
STALE_S = 15.0  # the default of SYNTHCOHORT_LEASE_STALE_S
CANCEL_POLL_S = 2.0
TERMINAL = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Claim(enum.Enum):
    claimed = "claimed"
    busy = "busy"  # another live worker holds it
    finished = "finished"  # succeeded, failed or cancelled: nothing to do
    passed = "passed"  # the job already waits for a later stage: this one is done


def stale_s() -> float:
    """Heartbeat age at which a holder counts as dead (``SYNTHCOHORT_LEASE_STALE_S``)."""
    return get_settings().lease_stale_s


def heartbeat_s() -> float:
    return min(HEARTBEAT_S, stale_s() / 5)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat_age_s(job: Job) -> float:
    """Seconds since the job row was last touched (SQLite hands back naive UTC datetimes)."""
    ts = job.updated_at
    if ts is None:
        return float("inf")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - ts).total_seconds()


class JobLease:
    """A claimed job: heartbeat thread, throttled cancel checks, writes guarded by the claim."""

    def __init__(self, factory: sessionmaker[Session], job_id: str, stage: str):
        self.factory = factory
        self.job_id = job_id
        self.stage = stage
        self.attempt: int | None = None
        self.lost = False  # someone else claimed the job (we were thought dead)
        self.cancelled = False
        self._last_cancel_poll: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- claiming ------------------------------------------------------------------------------
    def claim(self, plan: list[str] | None = None) -> Claim:
        """Try to take the job for ``self.stage``; ``plan`` (the job's stages in order) lets a
        late copy of an earlier stage see that the job has moved on."""
        for _ in range(5):
            with self.factory() as s:
                job = s.get(Job, self.job_id)
                if job is None:
                    raise NotFoundError(f"job {self.job_id} not found", field="job_id")
                if job.status in TERMINAL:
                    return Claim.finished
                if job.status == JobStatus.running and heartbeat_age_s(job) < stale_s():
                    return Claim.busy
                if (job.status == JobStatus.queued and plan and job.stage in plan and self.stage in plan
                        and plan.index(job.stage) > plan.index(self.stage)):
                    return Claim.passed
                seen = job.attempts or 0
                res = s.execute(
                    update(Job)
                    .where(Job.id == self.job_id, Job.attempts == seen, Job.status == job.status)
                    .values(status=JobStatus.running, stage=self.stage, attempts=seen + 1,
                            error=None, updated_at=utcnow())
                )
                s.commit()
                if res.rowcount == 1:
                    self.attempt = seen + 1
                    log.info("job %s: claimed stage %s (attempt %d) by %s",
                             self.job_id, self.stage, self.attempt, worker_name())
                    return Claim.claimed
        return Claim.busy

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.job_id}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_s()):
            try:
                if not self.write({}):
                    self.lost = True
                    log.warning("job %s: lost its claim; stopping", self.job_id)
                    return
            except Exception:  # a DB hiccup must not kill the task; the next beat retries
                log.exception("job %s: heartbeat failed", self.job_id)

    # -- guarded writes --------------------------------------------------------------------------
    def write(self, values: dict[str, Any]) -> bool:
        """Update the job row while we still hold it; False when the claim was lost."""
        with self.factory() as s:
            res = s.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.attempts == self.attempt,
                       Job.status == JobStatus.running)
                .values(**values, updated_at=utcnow())
            )
            s.commit()
            return res.rowcount == 1

    def owns(self, job: Job) -> bool:
        return job.attempts == self.attempt and job.status == JobStatus.running

    def should_stop(self) -> bool:
        """For ``should_stop`` callbacks: cancel requested, or the claim passed to another worker."""
        if self.lost or self.cancelled:
            return True
        now = time.monotonic()
        if self._last_cancel_poll is None or now - self._last_cancel_poll >= CANCEL_POLL_S:
            self._last_cancel_poll = now
            with self.factory() as s:
                job = s.get(Job, self.job_id)
                if job is None or not self.owns(job):
                    self.lost = True
                elif job.cancel_requested:
                    self.cancelled = True
        return self.lost or self.cancelled

    def check_now(self) -> bool:
        """``should_stop`` without the throttle: at the end of a stage that had no callback."""
        self._last_cancel_poll = None
        return self.should_stop()

    def __enter__(self) -> JobLease:
        self.start_heartbeat()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_heartbeat()
