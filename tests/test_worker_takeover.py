"""Finding 6 of issue 20: a worker SIGKILLed in each stage (import, train, sample, validate) is
restarted by the supervisor ``serve`` uses (:class:`workers.supervisor.WorkerSupervisor`), and
the restarted worker takes the dead one's stage over once its lease is stale; both jobs
complete without a person. Once per broker (embedded SQLite, Redis); the lease goes stale
after 4 s here (``SYNTHCOHORT_LEASE_STALE_S``) instead of 15 s, so four kills cost seconds.

The test watches the job row directly (every 20 ms) so that it can kill the worker while a short
stage (sampling 16 tiny-WGAN images) runs; the import killed is of the 260 hippocampus volumes,
whose 2 s are sure to be seen, where a MedMNIST npz can be done between two looks; the stage must be claimed again (``attempts`` goes up)
by a worker with another pid."""

from __future__ import annotations

import os
import signal
import time

import pytest

from synthcohort.workers.supervisor import WorkerSupervisor
from tests.test_service_flow import FAST_VALIDATION, TINY_WGAN, idem

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

STALE_S = "4"


def _job_row(job_id: str) -> tuple[str, str | None, int]:
    from synthcohort.store.db import Job, session_factory

    with session_factory()() as s:
        job = s.get(Job, job_id)
        return job.status.value, job.stage, job.attempts or 0


def kill_in_stage(sup: WorkerSupervisor, job_id: str, stage: str, logs: str = "", timeout: float = 180) -> int:
    """SIGKILL the supervised worker as soon as it runs ``stage`` of the job; the attempt killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, at, attempts = _job_row(job_id)
        assert status in ("queued", "running"), f"{status} before {stage} was killed\n{logs}"
        if status == "running" and at == stage and sup.proc is not None and sup.proc.poll() is None:
            os.kill(sup.proc.pid, signal.SIGKILL)
            return attempts
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never ran {stage}")


def wait_taken_over(sup: WorkerSupervisor, job_id: str, stage: str, killed_attempt: int, dead_pid: int,
                    stack, timeout: float = 120) -> None:
    """A new worker (another pid) claims the job again: the stage or one after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, at, attempts = _job_row(job_id)
        if attempts > killed_attempt or status == "succeeded":
            assert sup.proc is not None and sup.proc.pid != dead_pid
            return
        time.sleep(0.1)
    raise AssertionError(f"{stage} of {job_id} was not taken over\n{stack.worker_logs()}")


def kill_and_recover(sup, job_id, stage, stack) -> None:
    dead_pid = sup.proc.pid
    attempt = kill_in_stage(sup, job_id, stage, stack.worker_logs())
    wait_taken_over(sup, job_id, stage, attempt, dead_pid, stack)


def run_killed_everywhere(stack, shared_data) -> None:
    log = stack.home / "supervised-worker.log"
    stack.logs.append(log)
    sup = WorkerSupervisor(env=stack.env, logfile=log, backoff_s=0.25).start()  # 0.25, 0.5, 1, 2 s
    try:
        with stack.client_for("admin") as c:
            # the kill in import: 260 NIfTI volumes take the worker about 2 s, long enough to be seen
            # running (a MedMNIST npz imports in well under the polling interval on an idle machine)
            r = c.post("/v1/datasets", headers=idem("volumes"),
                       json={"path": str(shared_data / "hippocampus"), "modality": "MR", "class_name": "hippocampus"})
            assert r.status_code == 202, r.text
            volumes_job = r.json()["job_id"]
            kill_and_recover(sup, volumes_job, "import", stack)
            job = stack.wait_job(volumes_job, timeout=180)
            assert job["status"] == "succeeded", f"{job}\n{stack.worker_logs()}"
            # the cohort's data set, imported without a kill
            with open(shared_data / "medmnist" / "breastmnist.npz", "rb") as f:
                r = c.post("/v1/datasets", headers=idem("upload"),
                           files={"file": ("breastmnist.npz", f, "application/octet-stream")},
                           data={"format": "medmnist", "modality": "US", "classes": "malignant,normal_benign"})
            assert r.status_code == 202, r.text
            job = stack.wait_job(r.json()["job_id"], timeout=180)
            assert job["status"] == "succeeded", f"{job}\n{stack.worker_logs()}"

            body = {"dataset_id": job["target_id"], "class_name": "malignant", "generator": "wgan-gp",
                    "train_steps": 40, "config": TINY_WGAN, "count": 16, "seed": 5, "validation": FAST_VALIDATION}
            r = c.post("/v1/cohorts", json=body, headers=idem("cohort"))
            assert r.status_code == 202, r.text
            cohort_job = r.json()["job_id"]
            for stage in ("train", "sample", "validate"):
                kill_and_recover(sup, cohort_job, stage, stack)
            job = stack.wait_job(cohort_job, timeout=300)
            assert job["status"] == "succeeded", f"{job}\n{stack.worker_logs()}"
            assert sup.restarts == 4
            cohort = c.get(f"/v1/cohorts/{r.json()['id']}").json()
            assert cohort["status"] == "ready" and cohort["count"] == 16 and cohort["verdict"], cohort
            health = c.get("/v1/health").json()
            assert [w["pid"] for w in health["workers"]] == [sup.proc.pid], health
    finally:
        sup.stop(timeout=10)


def test_worker_killed_in_every_stage_on_embedded_broker(service, shared_data, monkeypatch):
    monkeypatch.setenv("SYNTHCOHORT_LEASE_STALE_S", STALE_S)
    run_killed_everywhere(service(broker="embedded", database="sqlite"), shared_data)


@pytest.mark.redis
def test_worker_killed_in_every_stage_on_redis(service, shared_data, monkeypatch):
    monkeypatch.setenv("SYNTHCOHORT_LEASE_STALE_S", STALE_S)
    run_killed_everywhere(service(broker="redis", database="sqlite"), shared_data)
