"""Celery configuration from settings, the per-kind task chains and the sample release rule."""

from __future__ import annotations

from synthcohort.core.settings import get_settings
from synthcohort.store.db import Job, JobKind
from synthcohort.workers.celery_app import (
    TASK_ROUTES,
    VISIBILITY_TIMEOUT_S,
    celery_config,
)
from synthcohort.workers.tasks import cohort_model_id, job_plan


def test_embedded_broker_without_settings(synthcohort_home):
    conf = celery_config(get_settings())
    assert conf["broker_url"] == f"sqla+sqlite:///{synthcohort_home.resolve() / 'broker.db'}"
    assert conf["result_backend"] is None and conf["task_ignore_result"] is True
    assert "visibility_timeout" not in conf["broker_transport_options"]


def test_redis_broker_and_delivery_guarantees(monkeypatch):
    monkeypatch.setenv("SYNTHCOHORT_BROKER_URL", "redis://127.0.0.1:6379/3")
    get_settings.cache_clear()
    conf = celery_config(get_settings())
    assert conf["broker_url"] == "redis://127.0.0.1:6379/3"
    assert conf["broker_transport_options"]["visibility_timeout"] == VISIBILITY_TIMEOUT_S <= 60
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_serializer"] == "json" and conf["accept_content"] == ["json"]


def test_training_and_sampling_go_to_gpu_import_and_validation_to_cpu():
    queues = {name.split(".")[-1]: r["queue"] for name, r in TASK_ROUTES.items()}
    assert queues == {"import_dataset": "cpu", "train_model": "gpu", "sample_cohort": "gpu",
                      "validate_cohort": "cpu"}


def test_app_is_reconfigured_when_settings_change(monkeypatch):
    from synthcohort.workers.celery_app import app, ensure_configured

    monkeypatch.setenv("SYNTHCOHORT_BROKER_URL", "redis://127.0.0.1:6379/5")
    get_settings.cache_clear()
    ensure_configured()
    assert app.conf.broker_url == "redis://127.0.0.1:6379/5"
    monkeypatch.delenv("SYNTHCOHORT_BROKER_URL")
    get_settings.cache_clear()
    ensure_configured()
    assert app.conf.broker_url.startswith("sqla+sqlite:///")


def _job(kind: JobKind, request: dict) -> Job:
    return Job(id="job-abc", kind=kind, request=request)


def test_chains_per_job_kind():
    assert job_plan(_job(JobKind.import_dataset, {"path": "x.npz"})) == ["import"]
    assert job_plan(_job(JobKind.train, {"dataset_id": "ds-1"})) == ["train"]
    assert job_plan(_job(JobKind.cohort, {"model_id": "mdl-1", "count": 4})) == ["sample", "validate"]
    assert job_plan(_job(JobKind.cohort, {"model_id": None, "dataset_id": "ds-1", "train_steps": 5})) == [
        "train", "sample", "validate"]


def test_cohort_model_id_is_fixed_in_advance():
    """A redelivered cohort job must resume the same model, so its id comes from the job id."""
    a = cohort_model_id(_job(JobKind.cohort, {"dataset_id": "ds-1"}))
    assert a == cohort_model_id(_job(JobKind.cohort, {"dataset_id": "ds-1"}))
    from synthcohort.generators.training import MODEL_ID

    assert MODEL_ID.match(a)
    other = Job(id="job-def", kind=JobKind.cohort, request={"dataset_id": "ds-1"})
    assert cohort_model_id(other) != a
    assert cohort_model_id(_job(JobKind.cohort, {"model_id": "mdl-given"})) == "mdl-given"




def test_worker_rejects_unknown_queue():
    from synthcohort.cli import main

    assert main(["worker", "--queues", "gpu,fast"]) == 2
