"""/v1/cohorts: creation, and everything that reads what a worker writes — status counts, the
report, samples and thumbnails, reviews (state changes + audit rows) and the download of
released samples only (TestClient; SQLite and PostgreSQL).

The worker's output is produced here with the workers' own code: a real sample directory
(``imaging.sample_dir.write_sample_dir``), a report in the validation contract's shape, and
Sample rows from ``workers.tasks.sample_rows`` (the release rule: flagged → held).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from synthcohort.core import layout
from tests.api_fixtures import Api

FLAGS = {1: [{"kind": "near_copy", "reason": "SSIM 0.97 to train 12", "score": 0.97}],
         2: [{"kind": "outlier", "reason": "far from every training image", "score": 8.1}]}


def request_cohort(api: Api, ds: str, who: str = "alice", **over):
    body = {"dataset_id": ds, "class_name": "malignant", "generator": "wgan-gp", "train_steps": 4,
            "count": 8, "seed": 7, **over}
    return api.post("/v1/cohorts", who, body)


def finish_cohort(api: Api, cohort_id: str, verdict: str = "needs_review", *, volumes: bool = False,
                  n: int = 4) -> np.ndarray:
    """Do what the workers do when a cohort is sampled and validated; returns the images."""
    from synthcohort.imaging.sample_dir import write_sample_dir
    from synthcohort.store.db import Cohort, CohortStatus, Verdict
    from synthcohort.workers.tasks import sample_rows

    rng = np.random.default_rng(0)
    shape = (n, 1, 6, 12, 10) if volumes else (n, 1, 16, 16)
    images = rng.integers(0, 256, shape).astype(np.float32) / 255.0
    if volumes:  # each depth slice has its own constant level, so a slice is recognisable
        images[:] = (np.arange(6, dtype=np.float32) * 40.0 / 255.0)[None, None, :, None, None]
    root = layout.cohorts_dir() / cohort_id
    write_sample_dir(root / "samples", images, class_name="malignant", seed=7, model_id="mdl-test")
    report = {
        "verdict": verdict, "reasons": [f"verdict {verdict}"],
        "metrics": {"relative_fid": {"value": 0.93, "ci": [0.9, 0.95], "threshold": 0.9, "passed": True}},
        "samples": [{"index": i, "file": f"images/{i:06d}", "flags": FLAGS.get(i, []),
                     "nearest_train": {"sample_id": f"train-{i}", "distance": 0.1 * i}} for i in range(n)],
        "extractors": [], "provenance": {"cohort_id": cohort_id}, "warnings": [],
    }
    (root / "report").mkdir(parents=True)
    (root / "report" / "report.json").write_text(json.dumps(report))
    (root / "report" / "report.html").write_text("<html><body>report of " + cohort_id + "</body></html>")
    with api.session() as s:
        cohort = s.get(Cohort, cohort_id)
        cohort.status, cohort.verdict = CohortStatus.ready, Verdict(verdict)
        cohort.reasons, cohort.metrics = report["reasons"], report["metrics"]
        s.add_all(sample_rows(cohort_id, root / "samples", report))
        s.commit()
    return images


@pytest.fixture
def cohort(api: Api, dataset_id: str) -> str:
    r = request_cohort(api, dataset_id)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_create_cohort_is_queued_idempotent_and_isolated(api: Api, dataset_id: str) -> None:
    from synthcohort.store.db import Job, JobKind

    body = {"dataset_id": dataset_id, "class_name": "malignant", "generator": "wgan-gp", "train_steps": 4,
            "count": 8, "seed": 7}
    a = api.post("/v1/cohorts", "alice", body, idem="c-1")
    b = api.post("/v1/cohorts", "alice", body, idem="c-1")
    assert a.status_code == b.status_code == 202
    out = a.json()
    assert b.json()["id"] == out["id"] and b.json()["job_id"] == out["job_id"]
    assert out["status"] == "queued" and out["verdict"] is None and out["count"] == 8
    assert (out["released"], out["held"], out["rejected"]) == (0, 0, 0)
    assert api.counts()["cohorts"] == 1 and api.counts()["jobs"] == 1
    with api.session() as s:
        job = s.get(Job, out["job_id"])
        assert job.kind == JobKind.cohort and job.target_id == out["id"] and job.request["train_steps"] == 4
    assert api.post("/v1/cohorts", "alice", {**body, "count": 9}, idem="c-1").status_code == 409
    # requester isolation; reviewers read every cohort; admin too
    assert api.get(f"/v1/cohorts/{out['id']}", "bob").status_code == 404
    assert api.get("/v1/cohorts", "bob").json()["total"] == 0
    assert api.get(f"/v1/cohorts/{out['id']}", "reviewer").status_code == 200
    assert api.get("/v1/cohorts", "admin").json()["total"] == 1


@pytest.mark.parametrize(
    ("over", "status", "field"),
    [
        ({"count": -3}, 422, "count"),
        ({"count": 0}, 422, "count"),
        ({"count": 5}, 422, "count"),  # validation needs at least six samples
        ({"class_name": "nodule"}, 422, "class_name"),
        ({"generator": "gan9000"}, 422, "generator"),
        ({"dataset_id": "ds-ffffffffffffffff"}, 404, "dataset_id"),
        ({"format": "jpeg"}, 422, "format"),
        ({"model_id": "mdl-x"}, 422, None),  # model_id and training fields together
        ({"validation": {"similarity_threshold": 0.1}}, 422, "validation.similarity_threshold"),
    ],
)
def test_bad_cohort_request_is_4xx_with_reason_and_leaves_nothing(
    api: Api, dataset_id: str, over: dict, status: int, field: str | None
) -> None:
    before = api.counts()
    before.pop("datasets")
    r = request_cohort(api, dataset_id, **over)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] and body["detail"]
    if field is not None:
        assert body["field"] == field
    after = api.counts()
    after.pop("datasets")
    assert after == before


def test_cohort_from_model_needs_a_trained_model_of_the_caller(api: Api, dataset_id: str) -> None:
    from synthcohort.store.db import JobStatus, ModelRecordRow

    m = api.post("/v1/models", "alice", {"dataset_id": dataset_id, "class_name": "malignant",
                                         "generator": "wgan-gp", "steps": 3}).json()
    r = api.post("/v1/cohorts", "alice", {"model_id": m["model_id"], "count": 6})
    assert r.status_code == 409 and r.json()["field"] == "model_id"
    with api.session() as s:
        s.get(ModelRecordRow, m["model_id"]).status = JobStatus.succeeded
        s.commit()
    assert api.post("/v1/cohorts", "bob", {"model_id": m["model_id"], "count": 6}).status_code == 404
    ok = api.post("/v1/cohorts", "alice", {"model_id": m["model_id"], "count": 6})
    assert ok.status_code == 202
    assert ok.json()["model_id"] == m["model_id"] and ok.json()["class_name"] == "malignant"


def test_report_samples_and_counts_read_the_workers_output(api: Api, cohort: str) -> None:
    assert api.get(f"/v1/cohorts/{cohort}/report", "alice").status_code == 409  # not validated yet
    finish_cohort(api, cohort)
    c = api.get(f"/v1/cohorts/{cohort}", "alice").json()
    assert (c["status"], c["verdict"]) == ("ready", "needs_review")
    assert (c["released"], c["held"], c["rejected"]) == (2, 2, 0)
    report = api.get(f"/v1/cohorts/{cohort}/report", "alice")
    assert report.status_code == 200 and report.json()["samples"][1]["flags"] == FLAGS[1]
    # the HTML report shows real training images: not for a requester who did not upload the data
    assert api.get(f"/v1/cohorts/{cohort}/report.html", "alice").status_code == 403
    html = api.get(f"/v1/cohorts/{cohort}/report.html", "reviewer")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html") and cohort in html.text
    with api.session() as s:
        from synthcohort.store.db import Cohort, DatasetRecord

        s.get(DatasetRecord, s.get(Cohort, cohort).dataset_id).owner_id = api.key_ids["alice"]
        s.commit()
    assert api.get(f"/v1/cohorts/{cohort}/report.html", "alice").status_code == 200
    held = api.get(f"/v1/cohorts/{cohort}/samples", "reviewer", params={"state": "held"}).json()
    assert held["total"] == 2 and [s["index"] for s in held["items"]] == [1, 2]
    first = held["items"][0]
    assert first["flags"] == FLAGS[1] and first["state"] == "held" and first["reviews"] == []
    assert first["nearest_train"] == {"sample_id": "train-1", "distance": 0.1}
    page = api.get(f"/v1/cohorts/{cohort}/samples", "alice", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 4 and [s["index"] for s in page["items"]] == [1, 2]
    bad = api.get(f"/v1/cohorts/{cohort}/samples", "alice", params={"state": "lost"})
    assert bad.status_code == 422 and bad.json()["field"] == "state"


def test_thumbnails_2d_and_held_ones_only_for_reviewers(api: Api, cohort: str) -> None:
    from PIL import Image

    images = finish_cohort(api, cohort)
    r = api.get(f"/v1/cohorts/{cohort}/samples/0/thumbnail.png", "alice")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    thumb = np.asarray(Image.open(io.BytesIO(r.content)))
    assert thumb.shape == (128, 128)
    expected = np.rint(images[0, 0] * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)  # 16 → 128, nearest
    np.testing.assert_array_equal(thumb, expected)
    listing = {s["index"]: s for s in api.get(f"/v1/cohorts/{cohort}/samples", "alice").json()["items"]}
    assert listing[0]["thumbnail_url"] == f"/v1/cohorts/{cohort}/samples/0/thumbnail.png"
    assert listing[1]["thumbnail_url"] is None  # held: may be a near-copy of a patient
    assert api.get(f"/v1/cohorts/{cohort}/samples/1/thumbnail.png", "alice").status_code == 403
    assert api.get(f"/v1/cohorts/{cohort}/samples/1/thumbnail.png", "reviewer").status_code == 200
    assert api.get(f"/v1/cohorts/{cohort}/samples/9/thumbnail.png", "reviewer").status_code == 404


def test_thumbnail_of_a_volume_is_its_middle_slice(api: Api, cohort: str) -> None:
    from PIL import Image

    finish_cohort(api, cohort, volumes=True)
    r = api.get(f"/v1/cohorts/{cohort}/samples/0/thumbnail.png", "alice")
    assert r.status_code == 200
    thumb = np.asarray(Image.open(io.BytesIO(r.content)))
    assert thumb.shape == (128, 107)  # a 12 × 10 (H × W) slice, longer edge to 128
    assert set(np.unique(thumb)) == {3 * 40}  # slice 3 of 6 (0-based): level 3·40


def test_review_changes_state_records_audit_and_guards(api: Api, cohort: str) -> None:
    from synthcohort.store.db import Review, Sample

    finish_cohort(api, cohort)
    url = f"/v1/cohorts/{cohort}/samples/{{}}/review"
    denied = api.post(url.format(1), "alice", {"decision": "approve"})
    assert denied.status_code == 403 and denied.json()["error"] == "Forbidden"
    ok = api.post(url.format(1), "reviewer", {"decision": "approve", "reason": "not a copy: different lesion"},
                  idem="rev-1")
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "released" and ok.json()["reviews"][0]["reviewer_name"] == "reviewer"
    replay = api.post(url.format(1), "reviewer", {"decision": "approve", "reason": "not a copy: different lesion"},
                      idem="rev-1")
    assert replay.status_code == 200 and replay.json()["reviews"] == ok.json()["reviews"]
    assert api.post(url.format(1), "reviewer", {"decision": "reject"}, idem="rev-1").status_code == 409
    assert api.post(url.format(1), "admin", {"decision": "reject"}).status_code == 409  # already reviewed
    rej = api.post(url.format(2), "admin", {"decision": "reject", "reason": "artefact"})
    assert rej.status_code == 200 and rej.json()["state"] == "rejected"
    unflagged = api.post(url.format(0), "reviewer", {"decision": "approve"})
    assert unflagged.status_code == 409 and "not flagged" in unflagged.json()["detail"]
    bad = api.post(url.format(2), "reviewer", {"decision": "maybe"})
    assert bad.status_code == 422 and bad.json()["field"] == "decision"
    with api.session() as s:
        reviews = s.query(Review).order_by(Review.id).all()
        assert [(r.decision, r.reviewer_id, r.reviewer_name) for r in reviews] == [
            ("approve", api.key_ids["reviewer"], "reviewer"), ("reject", api.key_ids["admin"], "admin")]
        assert reviews[0].reason == "not a copy: different lesion" and reviews[0].created_at is not None
        states = dict(s.query(Sample.index, Sample.state).filter(Sample.cohort_id == cohort).all())
        assert {i: st.value for i, st in states.items()} == {0: "released", 1: "released", 2: "rejected",
                                                               3: "released"}
    c = api.get(f"/v1/cohorts/{cohort}", "alice").json()
    assert (c["released"], c["held"], c["rejected"]) == (3, 0, 1)


def test_failed_cohort_cannot_be_reviewed_or_downloaded(api: Api, cohort: str) -> None:
    finish_cohort(api, cohort, verdict="failed")
    c = api.get(f"/v1/cohorts/{cohort}", "alice").json()
    assert c["held"] == 4 and c["released"] == 0
    r = api.post(f"/v1/cohorts/{cohort}/samples/1/review", "reviewer", {"decision": "approve"})
    assert r.status_code == 409 and "failed validation" in r.json()["detail"]
    d = api.get(f"/v1/cohorts/{cohort}/download", "alice")
    assert d.status_code == 409 and d.json()["error"] == "Conflict"


def test_download_holds_released_samples_only(api: Api, cohort: str) -> None:
    finish_cohort(api, cohort)
    assert api.post(f"/v1/cohorts/{cohort}/samples/2/review", "reviewer", {"decision": "approve"}).status_code == 200
    r = api.get(f"/v1/cohorts/{cohort}/download", "alice", params={"format": "png", "archive": "zip"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert f"{cohort}-png.zip" in r.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    images = sorted(n for n in zf.namelist() if n.startswith("images/"))
    assert len(images) == 3  # 0, 2 (approved), 3 — never the held near-copy 1
    prov = json.loads(zf.read("provenance.json"))
    assert prov["cohort_id"] == cohort and prov["released"] == 3
    assert [(r["index"], r["decision"]) for r in prov["reviews"]] == [(2, "approve")]
    assert api.get(f"/v1/cohorts/{cohort}/download", "bob").status_code == 404
    bad = api.get(f"/v1/cohorts/{cohort}/download", "alice", params={"archive": "rar"})
    assert bad.status_code == 422 and bad.json()["field"] == "archive"


def _decode(arr: dict) -> tuple[np.ndarray, np.ndarray | None]:
    import base64

    data = np.frombuffer(base64.b64decode(arr["data"]), dtype="<u2").reshape(arr["shape"])
    mask = arr.get("mask")
    spatial = arr["shape"][1:]
    return data, (np.frombuffer(base64.b64decode(mask), dtype=np.uint8).reshape([1, *spatial]) if mask else None)


def test_reset_undoes_a_decision_and_the_audit_trail_keeps_every_step(api: Api, cohort: str) -> None:
    from synthcohort.store.db import Review, Sample

    finish_cohort(api, cohort)
    url = f"/v1/cohorts/{cohort}/samples/{{}}/review"
    assert api.post(url.format(1), "reviewer", {"decision": "reset"}).status_code == 409  # held: nothing to undo
    assert api.post(url.format(1), "reviewer", {"decision": "approve"}).json()["state"] == "released"
    undone = api.post(url.format(1), "admin", {"decision": "reset", "reason": "undo"})
    assert undone.status_code == 200 and undone.json()["state"] == "held", undone.text
    assert api.post(url.format(1), "alice", {"decision": "reset"}).status_code == 403  # requesters never decide
    rej = api.post(url.format(1), "reviewer",
                   {"decision": "reject", "reason_code": "near_copy", "reason": "lesion of train 12"})
    assert rej.status_code == 200 and rej.json()["state"] == "rejected"
    assert [(r["decision"], r["reason_code"]) for r in rej.json()["reviews"]] == [
        ("approve", None), ("reset", None), ("reject", "near_copy")]
    # bad input: 422 naming the field, nothing recorded
    for body, field in (({"decision": "approve", "reason_code": "artefact"}, "reason_code"),
                        ({"decision": "reject", "reason_code": "ugly"}, "reason_code"),
                        ({"decision": "reject", "reason_code": "other", "reason": "  "}, "reason"),
                        ({"decision": "undo"}, "decision")):
        bad = api.post(url.format(2), "reviewer", body)
        assert bad.status_code == 422 and bad.json()["field"] == field, (body, bad.text)
    ok = api.post(url.format(2), "reviewer", {"decision": "reject", "reason_code": "other", "reason": "two lesions"})
    assert ok.status_code == 200
    trail = api.get(f"/v1/cohorts/{cohort}/reviews", "alice")  # the owner reads who decided what
    assert trail.status_code == 200
    items = trail.json()["items"]
    assert [(r["index"], r["decision"], r["reason_code"], r["reviewer_name"]) for r in items] == [
        (2, "reject", "other", "reviewer"), (1, "reject", "near_copy", "reviewer"), (1, "reset", None, "admin"),
        (1, "approve", None, "reviewer")]
    assert items[0]["reason"] == "two lesions" and items[0]["created_at"]
    assert trail.json()["total"] == 4
    assert api.get(f"/v1/cohorts/{cohort}/reviews", "bob").status_code == 404
    with api.session() as s:
        assert [(r.decision, r.reason_code) for r in s.query(Review).order_by(Review.id)] == [
            ("approve", None), ("reset", None), ("reject", "near_copy"), ("reject", "other")]
        states = dict(s.query(Sample.index, Sample.state).filter(Sample.cohort_id == cohort).all())
        assert {i: st.value for i, st in states.items()} == {0: "released", 1: "rejected", 2: "rejected", 3: "released"}


def test_pixels_are_the_samples_intensities_2d_and_3d(api: Api, cohort: str, dataset_id: str) -> None:
    images = finish_cohort(api, cohort)
    r = api.get(f"/v1/cohorts/{cohort}/samples/0/pixels", "alice")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["shape"], body["spatial_dims"], body["dtype"], body["mask"]) == ([1, 16, 16], 2, "uint16", None)
    data, _ = _decode(body)
    np.testing.assert_array_equal(data, np.rint(images[0] * 65535).astype(np.uint16))
    assert api.get(f"/v1/cohorts/{cohort}/samples/1/pixels", "alice").status_code == 403  # held
    assert api.get(f"/v1/cohorts/{cohort}/samples/1/pixels", "reviewer").status_code == 200
    assert api.get(f"/v1/cohorts/{cohort}/samples/1/pixels", "bob").status_code == 404

    other = request_cohort(api, dataset_id, seed=8).json()["id"]
    volumes = finish_cohort(api, other, volumes=True)
    vol = api.get(f"/v1/cohorts/{other}/samples/0/pixels", "alice").json()
    assert (vol["shape"], vol["spatial_dims"]) == ([1, 6, 12, 10], 3)
    data, _ = _decode(vol)
    np.testing.assert_array_equal(data, np.rint(volumes[0] * 65535).astype(np.uint16))
    assert [int(data[0, k, 0, 0]) // 257 for k in range(6)] == [0, 40, 80, 120, 160, 200]  # slice k has level 40·k


def test_image_array_carries_a_mask_of_the_images_shape() -> None:
    from synthcohort.api.pixels import image_array

    image = np.zeros((1, 3, 4, 5), np.float32)
    mask = np.zeros((1, 3, 4, 5), np.uint8)
    mask[0, 1, 2, 3] = 1
    out = image_array(image, mask, (1.0, 1.5, 2.0))
    _, decoded = _decode(out)
    assert decoded.shape == (1, 3, 4, 5) and decoded.sum() == 1 and decoded[0, 1, 2, 3] == 1
    assert out["spacing"] == [1.0, 1.5, 2.0]
    from synthcohort.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as err:
        image_array(image, np.zeros((1, 2, 2), np.uint8))
    assert err.value.field == "mask"


def test_nearest_training_images_for_reviewers_only(api: Api, cohort: str, dataset_id: str) -> None:
    from synthcohort.store.datasets import DatasetStore
    from synthcohort.store.db import Sample

    finish_cohort(api, cohort)
    train = DatasetStore().get(dataset_id).split("train")
    near = {"sample_id": train.sample_ids[3], "feature_distance": 0.25, "pixel_correlation": 0.5,
            "pixel_sample_id": train.sample_ids[5]}
    with api.session() as s:
        row = s.query(Sample).filter(Sample.cohort_id == cohort, Sample.index == 1).one()
        row.scores = {**row.scores, "nearest_train": near}
        s.commit()
    report_path = layout.cohort_report_dir(cohort) / "report.json"
    report = json.loads(report_path.read_text())
    report["details"] = {"thresholds": {"near_copy_feature_distance": 0.1, "near_copy_pixel_correlation": 0.97,
                                        "outlier_radius": 2.5}}
    report_path.write_text(json.dumps(report))

    url = f"/v1/cohorts/{cohort}/samples/1/nearest"
    denied = api.get(url, "alice")
    assert denied.status_code == 403 and denied.json()["field"] == "X-API-Key"
    r = api.get(url, "reviewer")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["index"] == 1 and body["outlier_radius"] == 2.5
    (feat, pix) = body["items"]
    assert [feat[k] for k in ("space", "sample_id", "measure", "value", "threshold", "near_copy_when")] == [
        "features", train.sample_ids[3], "feature_distance", 0.25, 0.1, "at_or_below"]
    assert (pix["space"], pix["sample_id"], pix["value"], pix["threshold"], pix["near_copy_when"]) == (
        "pixels", train.sample_ids[5], 0.5, 0.97, "at_or_above")
    for item, row in ((feat, 3), (pix, 5)):
        data, _ = _decode(item["image"])
        np.testing.assert_array_equal(data, np.rint(train.images[row] * 65535).astype(np.uint16))
    assert api.get(f"/v1/cohorts/{cohort}/samples/9/nearest", "reviewer").status_code == 404


def test_report_pictures_follow_the_report_html_rule(api: Api, cohort: str) -> None:
    finish_cohort(api, cohort)
    report_dir = layout.cohort_report_dir(cohort)
    for name in ("tsne.png", "grid_real.png"):
        (report_dir / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())
    tsne = api.get(f"/v1/cohorts/{cohort}/report/tsne.png", "alice")  # points only: the owner sees it
    assert tsne.status_code == 200 and tsne.headers["content-type"] == "image/png"
    assert tsne.content.endswith(b"tsne.png")
    assert api.get(f"/v1/cohorts/{cohort}/report/grid_real.png", "alice").status_code == 403  # real images
    assert api.get(f"/v1/cohorts/{cohort}/report/grid_real.png", "reviewer").status_code == 200
    assert api.get(f"/v1/cohorts/{cohort}/report/grid_synthetic.png", "reviewer").status_code == 404  # not drawn
    assert api.get(f"/v1/cohorts/{cohort}/report/tsne.png", "bob").status_code == 404
    for name in ("ortho_real.png", "ortho_synthetic.png", "spread.png"):  # a 3D report's slices show volumes
        (report_dir / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())
        assert api.get(f"/v1/cohorts/{cohort}/report/{name}", "alice").status_code == 403
        assert api.get(f"/v1/cohorts/{cohort}/report/{name}", "reviewer").content.endswith(name.encode())
    bad = api.get(f"/v1/cohorts/{cohort}/report/..%2Fsamples%2Fmanifest.csv", "reviewer")
    assert bad.status_code in (404, 422)
    bad = api.get(f"/v1/cohorts/{cohort}/report/secret.png", "reviewer")
    assert bad.status_code == 422 and bad.json()["field"] == "picture"


def test_me_names_the_callers_key_and_role_only(api: Api) -> None:
    r = api.get("/v1/me", "reviewer")
    assert r.status_code == 200 and r.json() == {"id": api.key_ids["reviewer"], "name": "reviewer", "role": "reviewer"}
    assert api.get("/v1/me", "bob").json()["role"] == "requester"
    assert api.client.get("/v1/me").status_code == 401
