"""POST/GET /v1/models and /v1/jobs: idempotent job creation, bad requests that leave no
record, cancellation, pagination (TestClient; SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from synthcohort.core import layout
from tests.api_fixtures import Api

BODY = {"class_name": "malignant", "generator": "wgan-gp", "steps": 5, "seed": 3}


def model_body(ds: str, **over) -> dict:
    return {"dataset_id": ds, **BODY, **over}


def test_create_model_commits_model_and_queued_job(api: Api, dataset_id: str) -> None:
    from synthcohort.store.db import Job, JobKind, JobStatus, ModelRecordRow

    r = api.post("/v1/models", "alice", model_body(dataset_id), idem="train-1")
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["status"] == "queued" and out["model_id"].startswith("mdl-") and out["job_id"].startswith("job-")
    with api.session() as s:
        job = s.get(Job, out["job_id"])
        model = s.get(ModelRecordRow, out["model_id"])
        assert job.kind == JobKind.train and job.status == JobStatus.queued
        assert job.target_id == model.id and model.job_id == job.id
        assert job.owner_id == model.owner_id == api.key_ids["alice"]
        assert job.request["steps"] == 5 and job.request["model_id"] == model.id
        assert job.celery_task_id  # sent to the (embedded) broker
    got = api.get(f"/v1/models/{out['model_id']}", "alice").json()
    assert got["dataset_id"] == dataset_id and got["status"] == "queued" and got["history"] is None
    job = api.get(f"/v1/jobs/{out['job_id']}", "alice").json()
    assert job["kind"] == "train" and job["status"] == "queued" and job["target_id"] == out["model_id"]


def test_same_idempotency_key_returns_first_job_and_never_a_second(api: Api, dataset_id: str) -> None:
    first = api.post("/v1/models", "alice", model_body(dataset_id), idem="k1")
    again = api.post("/v1/models", "alice", model_body(dataset_id), idem="k1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.counts()["jobs"] == 1 and api.counts()["models"] == 1
    # a different body under the same key is refused and adds nothing
    clash = api.post("/v1/models", "alice", model_body(dataset_id, steps=6), idem="k1")
    assert clash.status_code == 409 and clash.json()["field"] == "Idempotency-Key"
    assert api.counts()["jobs"] == 1
    # the same key from another API key is another request
    other = api.post("/v1/models", "bob", model_body(dataset_id), idem="k1")
    assert other.status_code == 202 and other.json()["job_id"] != first.json()["job_id"]
    assert api.counts()["jobs"] == 2


def test_post_without_idempotency_key_is_400(api: Api, dataset_id: str) -> None:
    r = api.post("/v1/models", "alice", model_body(dataset_id), idem=None)
    assert r.status_code == 400 and r.json()["field"] == "Idempotency-Key"
    assert api.counts()["jobs"] == 0


@pytest.mark.parametrize(
    ("over", "status", "field"),
    [
        ({"class_name": "pneumonia"}, 422, "class_name"),
        ({"generator": "vae"}, 422, "generator"),
        ({"dataset_id": "ds-0000000000000000"}, 404, "dataset_id"),
        ({"steps": -5}, 422, "steps"),
        ({"seed": -1}, 422, "seed"),
        ({"mask": True}, 422, "mask"),
        ({"colour": "red"}, 422, "colour"),
    ],
)
def test_bad_model_request_is_4xx_naming_the_field_and_leaves_nothing(
    api: Api, dataset_id: str, over: dict, status: int, field: str
) -> None:
    before = api.counts()
    before.pop("datasets")  # the dataset row itself may be recorded by the lookup
    r = api.post("/v1/models", "alice", model_body(dataset_id, **over))
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field and body["detail"] and body["error"]
    after = api.counts()
    after.pop("datasets")
    assert after == before


def test_cancel_queued_job_cancels_its_model_and_twice_is_409(api: Api, dataset_id: str) -> None:
    from synthcohort.store.db import JobStatus, ModelRecordRow

    out = api.post("/v1/models", "alice", model_body(dataset_id)).json()
    assert api.post(f"/v1/jobs/{out['job_id']}/cancel", "bob").status_code == 404  # not bob's
    r = api.post(f"/v1/jobs/{out['job_id']}/cancel", "alice")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    with api.session() as s:
        assert s.get(ModelRecordRow, out["model_id"]).status == JobStatus.cancelled
    again = api.post(f"/v1/jobs/{out['job_id']}/cancel", "alice")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


def test_pagination_and_owner_isolation_of_models_and_jobs(api: Api, dataset_id: str) -> None:
    ids = [api.post("/v1/models", "alice", model_body(dataset_id, seed=i)).json()["model_id"] for i in range(5)]
    bob = api.post("/v1/models", "bob", model_body(dataset_id)).json()
    seen = []
    for offset in (0, 2, 4):
        page = api.get("/v1/models", "alice", params={"offset": offset, "limit": 2}).json()
        assert page["total"] == 5 and page["offset"] == offset and page["limit"] == 2
        seen += [m["id"] for m in page["items"]]
    assert sorted(seen) == sorted(ids)  # every item once, none of bob's
    assert api.get("/v1/jobs", "alice").json()["total"] == 5
    assert api.get("/v1/models", "admin").json()["total"] == 6
    assert api.get(f"/v1/models/{bob['model_id']}", "alice").status_code == 404
    assert api.get(f"/v1/jobs/{bob['job_id']}", "alice").status_code == 404
    assert api.get(f"/v1/jobs/{bob['job_id']}", "admin").status_code == 200
    bad = api.get("/v1/models", "alice", params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "limit"


def test_broker_outage_is_503_and_a_retry_sends_the_same_job(api: Api, dataset_id: str, redis_url: str,  # noqa: F811
                                                             monkeypatch) -> None:
    from synthcohort.core.settings import get_settings
    from synthcohort.store.db import Job

    monkeypatch.setenv("SYNTHCOHORT_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    get_settings.cache_clear()
    down = api.post("/v1/models", "alice", model_body(dataset_id), idem="outage")
    assert down.status_code == 503 and "Idempotency-Key" in down.json()["detail"]
    with api.session() as s:
        (job,) = s.query(Job).all()
        assert job.status.value == "queued" and job.celery_task_id is None
    monkeypatch.setenv("SYNTHCOHORT_BROKER_URL", redis_url)
    get_settings.cache_clear()
    up = api.post("/v1/models", "alice", model_body(dataset_id), idem="outage")
    assert up.status_code == 202 and up.json()["job_id"] == job.id
    with api.session() as s:
        assert s.query(Job).count() == 1 and s.get(Job, job.id).celery_task_id


def test_model_view_carries_the_training_curve(api: Api, dataset_id: str) -> None:
    import json


    out = api.post("/v1/models", "alice", model_body(dataset_id)).json()
    folder = layout.models_dir() / out["model_id"]
    folder.mkdir(parents=True)
    summary = {"logged": 2, "first": {"step": 1, "loss_d": 1.5}, "last": {"step": 5, "loss_d": 0.4}}
    (folder / "model.json").write_text(json.dumps({"model_id": out["model_id"], "history": summary}))
    assert api.get(f"/v1/models/{out['model_id']}", "alice").json()["history"] == summary
    curve = [{"step": s, "loss_d": 1.0 / s} for s in range(1, 6)]
    (folder / "history.json").write_text(json.dumps(curve))
    assert api.get(f"/v1/models/{out['model_id']}", "alice").json()["history"] == curve
