"""Acceptance: the whole service, end to end, through real processes.

BreastMNIST is uploaded through ``POST /v1/datasets``; a cohort of the minority class
(``malignant``) is requested, which trains a tiny WGAN-GP inside the job; a real worker process
runs import → train → sample → validate; the test reads the report, approves a held sample as a
reviewer, downloads the archive (manifest + SHA256SUMS checked) and loads it with
``CohortDataset``. Once on Redis + PostgreSQL, once on the embedded broker + SQLite.

How a sample gets held for review: a 4-step generator makes noise, whose cohort fails the
service's gates and would hold everything. This test is about the service path (review,
release, download), not about the gates (tests/test_validation_* cover those), so it asks, as
an admin (only an admin may loosen a gate), for the gates to be turned off (threshold 0) and
for the most generous outlier flag (``outlier_quantile`` 0.51: flag a sample farther from the
real data than the median real k-NN radius). The verdict is then ``needs_review`` with flagged
samples held and the rest released; the thresholds used are recorded in the report, which the
test checks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

FAST_VALIDATION = {
    # budgets: a few seconds instead of minutes
    "bootstrap": 20, "encoder_epochs": 2, "utility": False, "tsne": False, "use_inception": False,
    "kid_subsets": 5, "kid_subset_size": 20,
    # gates off (admin only): this test is about review and release, not about the gates
    "similarity_threshold": 0.0, "coverage_ratio_threshold": 0.0, "entropy_ratio_threshold": 0.0,
    # flags as generous as allowed, so samples are held for a reviewer
    "outlier_quantile": 0.51, "copy_quantile": 0.49,
}
TRAIN_STEPS = 4
COUNT = 16
# a generator small enough that a few steps take seconds on a loaded 2-core machine
TINY_WGAN = {"batch_size": 8, "g_channels": 8, "d_channels": 8, "max_channels": 32, "n_critic": 1, "z_dim": 16,
             "embed_dim": 8, "log_every": 1}


def idem(name: str) -> dict[str, str]:
    import secrets

    return {"Idempotency-Key": f"{name}-{secrets.token_hex(6)}"}


def upload_breastmnist(stack, shared_data) -> str:
    with stack.client_for("requester") as c:
        path = shared_data / "medmnist" / "breastmnist.npz"
        with open(path, "rb") as f:
            r = c.post("/v1/datasets", headers=idem("upload"),
                       files={"file": ("breastmnist.npz", f, "application/octet-stream")},
                       data={"format": "medmnist", "modality": "US", "classes": "malignant,normal_benign"})
    assert r.status_code == 202, r.text
    job = stack.wait_job(r.json()["job_id"], role="requester", timeout=180)
    assert job["status"] == "succeeded", job
    assert job["target_id"].startswith("ds-")
    return job["target_id"]


def run_flow(stack, shared_data, *, provenance: bool = False) -> None:
    stack.start_worker()
    dataset_id = upload_breastmnist(stack, shared_data)
    with stack.client_for("requester") as c:
        ds = c.get(f"/v1/datasets/{dataset_id}").json()
    assert ds["classes"] == ["malignant", "normal_benign"]

    body = {"dataset_id": dataset_id, "class_name": "malignant", "generator": "wgan-gp",
            "train_steps": TRAIN_STEPS, "config": TINY_WGAN, "count": COUNT, "seed": 7,
            "validation": FAST_VALIDATION}
    key = idem("cohort")
    with stack.client_for("admin") as admin:
        r = admin.post("/v1/cohorts", json=body, headers=key)
        assert r.status_code == 202, r.text
        cohort = r.json()
        # the same Idempotency-Key returns the first cohort and job, and starts nothing new
        again = admin.post("/v1/cohorts", json=body, headers=key)
        assert again.status_code in (200, 202), again.text
        assert (again.json()["id"], again.json()["job_id"]) == (cohort["id"], cohort["job_id"])
        assert admin.post("/v1/cohorts", json={**body, "count": COUNT + 1}, headers=key).status_code == 409

    seen: list[dict] = []

    def record(job: dict) -> bool:
        seen.append(job)
        return job["status"] in ("succeeded", "failed", "cancelled")

    job = stack.wait_job(cohort["job_id"], timeout=400, until=record)
    assert job["status"] == "succeeded", f"{job}\n{stack.worker_logs()}"
    assert job["percent"] == 100.0 and job["target_id"] == cohort["id"]
    # progress was reported on the way: a training stage with an ETA and losses, rising percentages
    train_reports = [j for j in seen if j["stage"] == "train" and j["status"] == "running" and j["metrics"].get("step")]
    if train_reports:  # polling may miss a stage of a 30-step run; the percentages must still rise
        assert any("loss" in k for k in train_reports[-1]["metrics"]), train_reports[-1]
    percents = [j["percent"] for j in seen]
    assert percents == sorted(percents)

    with stack.client_for("admin") as admin:
        assert admin.get("/v1/cohorts").json()["total"] == 1  # the replayed POST started nothing
        cohort = admin.get(f"/v1/cohorts/{cohort['id']}").json()
        assert cohort["status"] == "ready" and cohort["verdict"] == "needs_review", cohort
        assert cohort["released"] + cohort["held"] == COUNT and cohort["held"] >= 1 and cohort["rejected"] == 0
        assert cohort["model_id"].startswith("mdl-")
        model = admin.get(f"/v1/models/{cohort['model_id']}").json()
        assert model["status"] == "succeeded" and len(model["checkpoint_sha256"]) == 64

        report = admin.get(f"/v1/cohorts/{cohort['id']}/report").json()
        assert report["verdict"] == "needs_review"
        assert report["metrics"]["s_fid"]["threshold"] == 0.0
        assert report["provenance"]["cohort_id"] == cohort["id"]
        assert report["provenance"]["model_id"] == cohort["model_id"]
        assert len(report["samples"]) == COUNT
        html = admin.get(f"/v1/cohorts/{cohort['id']}/report.html")
        assert html.status_code == 200 and "<html" in html.text.lower()

        held = admin.get(f"/v1/cohorts/{cohort['id']}/samples", params={"state": "held", "limit": 100}).json()
        assert held["total"] == cohort["held"]
        assert all(s["flags"] for s in held["items"])
        pick = held["items"][0]["index"]
    # a reviewer approves one held sample
    with stack.client_for("reviewer") as rev:
        r = rev.post(f"/v1/cohorts/{cohort['id']}/samples/{pick}/review",
                     json={"decision": "approve", "reason": "looks like tissue"}, headers=idem("review"))
        assert r.status_code in (200, 201), r.text
    with stack.client_for("admin") as admin:
        after = admin.get(f"/v1/cohorts/{cohort['id']}").json()
        assert (after["released"], after["held"]) == (cohort["released"] + 1, cohort["held"] - 1)
        released = admin.get(f"/v1/cohorts/{cohort['id']}/samples", params={"state": "released", "limit": 100}).json()
        released_idx = sorted(s["index"] for s in released["items"])
        assert pick in released_idx and len(released_idx) == after["released"]

        r = admin.get(f"/v1/cohorts/{cohort['id']}/download", params={"format": "png", "archive": "zip"})
        assert r.status_code == 200, r.text
    archive = stack.home / "download.zip"
    archive.write_bytes(r.content)
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = set(z.namelist())
        sums = {}
        for line in z.read("SHA256SUMS").decode().splitlines():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
        assert sums and set(sums) == names - {"SHA256SUMS"}
        for name, digest in sums.items():
            assert hashlib.sha256(z.read(name)).hexdigest() == digest, name
        rows = list(csv.DictReader(io.StringIO(z.read("manifest.csv").decode())))
    assert sorted(int(row["index"]) for row in rows) == released_idx
    assert all(row["model_id"] == cohort["model_id"] for row in rows)
    assert all(row["file"] in names for row in rows)

    # the client downloads, checks SHA256SUMS and extracts; CohortDataset reads it like torch data
    from synthcohort.client import Client
    from synthcohort.cohort_dataset import CohortDataset

    with Client(stack.url, stack.keys["admin"]) as client:
        ds = CohortDataset(cohort["id"], client=client, root=stack.home / "downloads")
    assert len(ds) == len(released_idx)
    assert sorted(int(row["index"]) for row in ds.manifest) == released_idx
    image, label = ds[0]
    assert tuple(image.shape) == (1, 28, 28) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert label == 0  # malignant is class 0 of BreastMNIST
    if provenance:
        walk_back_and_regenerate(stack, r.content, pick)


def walk_back_and_regenerate(stack, archive: bytes, pick: int) -> None:
    """Issue 21: from one downloaded sample, through the API alone, to everything that made it
    (model, checkpoint hash, dataset version, seed, validation report, reviewer decision), then
    the same sample again, bit for bit, from the same model and seed."""
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        row = next(r for r in csv.DictReader(io.StringIO(z.read("manifest.csv").decode())) if int(r["index"]) == pick)
        sample_bytes = z.read(row["file"])
        prov = json.loads(z.read("provenance.json"))
    assert prov["model_id"] == row["model_id"] and prov["code_version"]["synthcohort"]
    review = next(v for v in prov["reviews"] if v["index"] == pick)
    assert (review["decision"], review["reason"]) == ("approve", "looks like tissue")
    with stack.client_for("admin") as c:  # the cohort's owner
        cohort = c.get(f"/v1/cohorts/{prov['cohort_id']}").json()
        model = c.get(f"/v1/models/{row['model_id']}").json()
        dataset = c.get(f"/v1/datasets/{model['dataset_id']}")
        report = c.get(f"/v1/cohorts/{prov['cohort_id']}/report")
        sample = c.get(f"/v1/cohorts/{prov['cohort_id']}/samples/{pick}").json()
    assert cohort["model_id"] == model["id"] and cohort["seed"] == prov["seed"] == 7
    assert model["checkpoint_sha256"] == row["checkpoint_sha256"] == prov["model"]["checkpoint_sha256"]
    assert model["dataset_id"] == prov["dataset_id"] and dataset.status_code == 200
    assert model["seed"] == prov["model"]["seed"] and model["code_version"]["synthcohort"]
    assert hashlib.sha256(report.content).hexdigest() == prov["report_sha256"]  # the very report that judged it
    judged = report.json()
    assert judged["provenance"]["model_id"] == model["id"] and judged["samples"][pick]["index"] == pick
    assert judged["provenance"]["code_version"]["git_commit"] or judged["provenance"]["code_version"]["synthcohort"]
    assert sample["sha256"] == hashlib.sha256(sample_bytes).hexdigest()
    assert [(v["decision"], v["reviewer_name"]) for v in sample["reviews"]] == [("approve", review["reviewer_name"])]

    body = {"model_id": model["id"], "count": cohort["count"], "seed": cohort["seed"], "validation": FAST_VALIDATION}
    with stack.client_for("admin") as admin:
        again = admin.post("/v1/cohorts", json=body, headers=idem("regenerate"))
        assert again.status_code == 202, again.text
        job = stack.wait_job(again.json()["job_id"], timeout=300)
        assert job["status"] == "succeeded", f"{job}\n{stack.worker_logs()}"
        twin = admin.get(f"/v1/cohorts/{again.json()['id']}/samples/{pick}").json()
    assert twin["sha256"] == sample["sha256"]  # same model, same seed: the same bytes


@pytest.mark.redis
@pytest.mark.postgres
def test_flow_on_redis_and_postgres(service, shared_data):
    run_flow(service(broker="redis", database="postgres"), shared_data)


def test_flow_on_embedded_broker_and_sqlite(service, shared_data):
    run_flow(service(broker="embedded", database="sqlite"), shared_data, provenance=True)
