"""A worker SIGKILLed in the middle of training: a new worker finishes the job from the last
checkpoint, and the model equals one trained straight through.

The training runs inside a cohort job (``POST /v1/cohorts`` with ``train_steps``), whose model
id the worker fixes in advance. Redis redelivers the unacknowledged message after its
visibility timeout (30 s); the new worker's claim succeeds once the dead worker's heartbeat is
stale (15 s); training resumes from ``models/<id>/checkpoint.pt`` (the new worker logs the step
it resumed from). On the embedded broker the message is lost with the worker, and the new worker
re-sends the orphaned job at start (second test). Once the model is trained the job is
cancelled: its validation is covered by ``test_service_flow``.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
import torch

from tests.test_service_flow import TINY_WGAN, idem, upload_breastmnist

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

STEPS = 100  # checkpoints every 5 steps (workers.tasks._checkpoint_every); the kill window [2, 96) lasts seconds
# (at 16 steps an idle machine finished the whole job between two polls)
CONFIG = dict(TINY_WGAN)
SEED = 11


def train_until_killed(stack, shared_data) -> tuple[str, str, int]:
    """Ask for a cohort (which trains first); SIGKILL the worker once a checkpoint past step 1
    and well before the end exists."""
    from synthcohort.store.db import Job
    from synthcohort.workers.tasks import _checkpoint_step, cohort_model_id

    first = stack.start_worker()
    dataset_id = upload_breastmnist(stack, shared_data)
    with stack.client_for("requester") as c:
        r = c.post("/v1/cohorts", headers=idem("cohort"),
                   json={"dataset_id": dataset_id, "class_name": "malignant", "generator": "wgan-gp",
                         "train_steps": STEPS, "seed": SEED, "config": CONFIG, "count": 8})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    model_id = cohort_model_id(Job(id=job_id, request={}))
    ckpt = stack.home / "models" / model_id / "checkpoint.pt"
    deadline = time.monotonic() + 240
    killed_at = 0
    while time.monotonic() < deadline:
        job = stack.wait_job(job_id, role="requester", until=lambda j: True)
        assert job["status"] in ("queued", "running"), f"{job}\n{stack.worker_logs()}"
        if ckpt.exists() and 2 <= (step := _checkpoint_step(ckpt)) < STEPS - 4:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            killed_at = step
            break
        time.sleep(0.2)
    assert killed_at > 0, f"no intermediate checkpoint seen\n{stack.worker_logs()}"
    job = stack.wait_job(job_id, role="requester", until=lambda j: True)
    assert job["status"] == "running" and job["stage"] == "train"  # nothing finished it behind our back
    return model_id, job_id, killed_at


def check_resumed(stack, model_id: str, job_id: str, killed_at: int) -> None:
    from synthcohort.generators.training import train_model

    deadline = time.monotonic() + 300
    with stack.client_for("requester") as c:
        while (model := c.get(f"/v1/models/{model_id}")).status_code != 200 or model.json()["status"] != "succeeded":
            assert time.monotonic() < deadline, f"{model.text}\n{stack.worker_logs()}"
            time.sleep(0.5)
        model = model.json()
        # training is what this test is about: stop the job before its validation stage
        assert c.post(f"/v1/jobs/{job_id}/cancel", headers=idem("cancel")).status_code in (200, 202, 409)
    job = stack.wait_job(job_id, role="requester", timeout=120)
    assert job["status"] in ("cancelled", "succeeded"), job
    resumed_log = stack.logs[-1].read_text()
    started = [int(x) for x in re.findall(rf"resuming {model_id} from step (\d+)", resumed_log)]
    assert started and started[0] >= killed_at > 0, resumed_log[-3000:]
    resumed = torch.load(stack.home / "models" / model_id / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert resumed["step"] == STEPS and model["checkpoint_sha256"]
    steps = [h["step"] for h in resumed["history"]]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # one unbroken curve, no step twice

    # the same training straight through, in this process: bit-identical weights
    straight_id = "mdl-" + model_id[-8:] + "0000"
    train_model(model["dataset_id"], "malignant", "wgan-gp", steps=STEPS, seed=SEED, config=CONFIG,
                model_id=straight_id, device="cpu")
    straight = torch.load(stack.home / "models" / straight_id / "checkpoint.pt", map_location="cpu",
                          weights_only=False)
    compared = 0
    for name, state in straight["modules"].items():
        for k, v in state.items():
            if torch.is_tensor(v) and v.is_floating_point():
                assert torch.equal(v, resumed["modules"][name][k]), f"{name}.{k} differs after resume"
                compared += 1
    assert compared > 0


@pytest.mark.redis
@pytest.mark.postgres
def test_sigkill_during_training_resumes_on_redis(service, shared_data):
    stack = service(broker="redis", database="postgres")
    model_id, job_id, killed_at = train_until_killed(stack, shared_data)
    stack.start_worker()  # Redis hands the unacknowledged message to it after the visibility timeout
    check_resumed(stack, model_id, job_id, killed_at)


def test_sigkill_during_training_resumes_on_embedded_broker(service, shared_data):
    stack = service(broker="embedded", database="sqlite")
    model_id, job_id, killed_at = train_until_killed(stack, shared_data)
    stack.start_worker()  # re-sends the orphaned running job at start
    assert "re-sent 1 job(s) left running" in stack.logs[-1].read_text()
    check_resumed(stack, model_id, job_id, killed_at)
