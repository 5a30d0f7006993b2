"""The job claim that makes redelivered messages harmless, and progress written to the job row."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from synthcohort.core.progress import Progress
from synthcohort.store.db import Job, JobKind, JobStatus, session_factory, utcnow
from synthcohort.workers.lease import STALE_S, Claim, JobLease
from synthcohort.workers.progress import JobProgress, stage_spans


@pytest.fixture
def factory():
    from synthcohort.store.migrate import upgrade_database

    upgrade_database()
    return session_factory()


def make_job(factory, **kw) -> str:
    job_id = f"job-{kw.pop('n', 1):04d}"
    with factory() as s:
        s.add(Job(id=job_id, kind=JobKind.train, request={}, **kw))
        s.commit()
    return job_id


def set_job(factory, job_id: str, **values) -> None:
    with factory() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))
        s.commit()


def get_job(factory, job_id: str) -> Job:
    with factory() as s:
        return s.get(Job, job_id)


def test_queued_job_is_claimed_once_and_counts_the_attempt(factory):
    job_id = make_job(factory)
    first = JobLease(factory, job_id, "train")
    assert first.claim() is Claim.claimed
    job = get_job(factory, job_id)
    assert (job.status, job.stage, job.attempts) == (JobStatus.running, "train", 1)
    # a second delivery while the first holder's heartbeat is fresh must wait
    assert JobLease(factory, job_id, "train").claim() is Claim.busy
    assert get_job(factory, job_id).attempts == 1


def test_stale_holder_is_taken_over_and_loses_its_writes(factory):
    job_id = make_job(factory)
    dead = JobLease(factory, job_id, "train")
    assert dead.claim() is Claim.claimed
    set_job(factory, job_id, updated_at=utcnow() - timedelta(seconds=STALE_S + 5))
    heir = JobLease(factory, job_id, "train")
    assert heir.claim() is Claim.claimed
    assert get_job(factory, job_id).attempts == 2
    # the old holder (e.g. a worker that was only frozen) can no longer write
    assert dead.write({"percent": 99.0}) is False
    assert dead.should_stop() is True and dead.lost
    assert heir.write({"percent": 42.0}) is True
    assert get_job(factory, job_id).percent == 42.0


@pytest.mark.parametrize("status", [JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled])
def test_finished_job_is_not_run_again(factory, status):
    job_id = make_job(factory, status=status)
    assert JobLease(factory, job_id, "validate").claim() is Claim.finished


def test_concurrent_claims_have_one_winner(factory):
    job_id = make_job(factory)
    results: list[Claim] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        results.append(JobLease(factory, job_id, "sample").claim())

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.value for r in results) == ["busy", "busy", "busy", "claimed"]
    assert get_job(factory, job_id).attempts == 1


def test_cancel_request_is_seen_by_should_stop(factory):
    job_id = make_job(factory)
    lease = JobLease(factory, job_id, "train")
    lease.claim()
    assert lease.should_stop() is False
    set_job(factory, job_id, cancel_requested=True)
    lease._last_cancel_poll = None  # the poll is throttled; look now
    assert lease.should_stop() is True and lease.cancelled and not lease.lost


def test_heartbeat_keeps_the_claim_fresh(factory, monkeypatch):
    import synthcohort.workers.lease as lease_mod

    monkeypatch.setattr(lease_mod, "HEARTBEAT_S", 0.05)
    job_id = make_job(factory)
    lease = JobLease(factory, job_id, "train")
    lease.claim()
    set_job(factory, job_id, updated_at=utcnow() - timedelta(seconds=STALE_S + 5))
    with lease:
        deadline = threading.Event()
        for _ in range(100):
            if lease_mod.heartbeat_age_s(get_job(factory, job_id)) < 5:
                break
            deadline.wait(0.05)
    assert lease_mod.heartbeat_age_s(get_job(factory, job_id)) < 5
    assert JobLease(factory, job_id, "train").claim() is Claim.busy


def test_progress_is_throttled_and_mapped_into_the_stage_span(factory):
    job_id = make_job(factory)
    lease = JobLease(factory, job_id, "train")
    lease.claim()
    spans = stage_spans(["train", "sample", "validate"])
    lo, hi = spans["train"]
    assert lo == 0.0 and 0 < hi < spans["sample"][1] < spans["validate"][1] == pytest.approx(100.0)
    writer = JobProgress(lease, spans["train"], min_interval_s=3600, extra_metrics={"resumed_from_step": 7})
    writer(Progress("train", 10, 100, {"loss_d": 1.5, "bad": float("nan")}, eta_s=12.0))
    for step in range(20, 100, 10):  # inside the throttle window: not written
        writer(Progress("train", step, 100, {"loss_d": 0.1}))
    job = get_job(factory, job_id)
    assert writer.writes == 1
    assert job.percent == pytest.approx(lo + (hi - lo) * 0.10, abs=0.01)
    assert job.eta_s == 12.0
    assert job.metrics == {"resumed_from_step": 7, "loss_d": 1.5, "step": 10, "total": 100}
    writer(Progress("train", 100, 100, {"loss_d": 0.05}))  # the last report is always written
    job = get_job(factory, job_id)
    assert writer.writes == 2 and job.percent == pytest.approx(hi, abs=0.01)
    assert job.metrics["step"] == 100 and job.metrics["loss_d"] == 0.05


def test_late_copy_of_an_earlier_stage_passes_the_job_on(factory):
    """A redelivered 'sample' after the job moved on to 'validate' must neither run again nor
    stop the chain (the next stage may never have been sent if the first worker died)."""
    plan = ["train", "sample", "validate"]
    job_id = make_job(factory, status=JobStatus.queued, stage="validate", attempts=2)
    assert JobLease(factory, job_id, "sample").claim(plan) is Claim.passed
    assert get_job(factory, job_id).attempts == 2  # untouched
    assert JobLease(factory, job_id, "validate").claim(plan) is Claim.claimed
