"""Each process takes its share of the CPUs for torch (synthcohort.core.threads): the setting, else
OMP_NUM_THREADS, else the CPUs of its affinity divided by the worker slots on its host. Checked as
functions, and in real worker processes: two workers on one host train with half the CPUs each."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from synthcohort.core import layout
from synthcohort.core.settings import get_settings
from synthcohort.core.threads import available_cpus, default_threads, torch_threads


@pytest.fixture
def four_cpus(monkeypatch, synthcohort_home):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SYNTHCOHORT_TORCH_THREADS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_default_is_a_share_of_the_affinity(four_cpus):
    assert available_cpus() == 4
    assert [default_threads(p) for p in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    assert torch_threads() == 4 and torch_threads(processes=2) == 2


def test_the_setting_wins_then_omp_num_threads(four_cpus, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(processes=2) == 3
    monkeypatch.setenv("SYNTHCOHORT_TORCH_THREADS", "1")
    get_settings.cache_clear()
    assert torch_threads(processes=1) == 1
    monkeypatch.setenv("SYNTHCOHORT_TORCH_THREADS", "0")
    get_settings.cache_clear()
    with pytest.raises(ValueError):
        get_settings()


def _beat(name: str, host: str, concurrency: int, age_s: float = 0.0) -> None:
    folder = layout.workers_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(
        {"name": name, "host": host, "pid": 1, "queues": ["gpu"], "concurrency": concurrency,
         "beat_at": time.time() - age_s}))


def test_host_slots_count_live_workers_on_this_host(four_cpus):
    from synthcohort.workers.health import host_slots

    assert host_slots() == 1  # nobody beating: this process alone
    _beat("a", socket.gethostname(), 1)
    _beat("b", socket.gethostname(), 2)
    _beat("elsewhere", "another-host", 4)  # other machines' CPUs are not shared
    _beat("dead", socket.gethostname(), 4, age_s=10 * get_settings().lease_stale_s)
    assert host_slots() == 3
    assert torch_threads(processes=host_slots()) == 1


@pytest.mark.slow
@pytest.mark.shared_data
def test_two_workers_on_one_host_train_with_a_share_each(service, shared_data):
    """Real worker processes, no thread setting and no OMP_NUM_THREADS: the train stage of either
    worker runs torch with the CPUs divided by the two workers' slots; the record says so."""
    from tests.test_service_flow import TINY_WGAN, idem, upload_breastmnist

    stack = service()
    for var in ("OMP_NUM_THREADS", "SYNTHCOHORT_TORCH_THREADS"):
        stack.env.pop(var, None)
    stack.start_worker()
    stack.start_worker()
    dataset_id = upload_breastmnist(stack, shared_data)
    with stack.client_for("requester") as c:
        r = c.post("/v1/models", headers=idem("model"),
                   json={"dataset_id": dataset_id, "class_name": "malignant", "generator": "wgan-gp",
                         "steps": 2, "config": TINY_WGAN})
    assert r.status_code == 202, r.text
    job = stack.wait_job(r.json()["job_id"], role="requester", timeout=240)
    assert job["status"] == "succeeded", f"{job}\n{stack.worker_logs()}"
    record = json.loads((stack.home / "models" / r.json()["model_id"] / "model.json").read_text())
    assert record["torch_threads"] == max(1, available_cpus() // 2)
    assert f"train with {max(1, available_cpus() // 2)} torch threads" in stack.worker_logs()
