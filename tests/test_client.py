"""The Python client against the real API (``api.app.create_app`` served by uvicorn on a free
port), with cohort rows and files laid out as a worker leaves them after validation; and the
client's retry / checksum logic against small real HTTP servers that misbehave on purpose."""

from __future__ import annotations

import http.server
import io
import json
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import synthcohort
from synthcohort.client import (
    ApiConflict,
    ApiNotFound,
    ChecksumError,
    Client,
    Forbidden,
    JobFailed,
    JobTimeout,
    Unauthorized,
    verify_sha256sums,
)
from synthcohort.core import layout
from synthcohort.core.errors import NotFoundError, SynthcohortError
from synthcohort.core.progress import Progress
from synthcohort.imaging.sample_dir import write_sample_dir
from synthcohort.store.cohort_export import ReleasedSample, stream_archive

COHORT = "coh-0000000000000001"
MODEL = "mdl-0000000000000001"
FLAGGED = {1: "near_copy"}  # sample 1 held for review; 3 rejected earlier; 0, 2 released


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_dataset() -> str:
    from synthcohort.store.datasets import (
        DatasetBuild,
        DatasetStore,
        SampleRecord,
        SplitArrays,
    )

    build = DatasetBuild(
        name="tiny", modality="US", classes=["benign", "malignant"],
        splits={"train": SplitArrays(np.zeros((2, 1, 4, 4), np.float32), np.array([0, 1]), None, ["a", "b"])},
        records=[SampleRecord("a", "train", 0, "benign", "a.png", "0" * 64),
                 SampleRecord("b", "train", 1, "malignant", "b.png", "1" * 64)],
        normalisation={"method": "divide", "divisor": 255.0}, source={"kind": "test"}, split_origin="test")
    return DatasetStore().commit(build).id


@pytest.fixture
def api(tmp_path):
    """The API on a free port, an owner, a reviewer and a stranger key, and one validated cohort
    (verdict needs_review) whose sample dir and report are on disk."""
    import uvicorn

    from synthcohort.api.app import create_app
    from synthcohort.api.keys import create_api_key
    from synthcohort.store.db import (
        Cohort,
        CohortStatus,
        DatasetRecord,
        Job,
        JobKind,
        JobStatus,
        ModelRecordRow,
        Role,
        Sample,
        SampleState,
        Verdict,
        session_factory,
    )
    from synthcohort.store.migrate import upgrade_database

    upgrade_database()
    dataset_id = _tiny_dataset()
    images = np.random.default_rng(0).random((4, 1, 16, 16), dtype=np.float32)
    samples_dir = layout.cohorts_dir() / COHORT / "samples"
    rows = write_sample_dir(samples_dir, images, class_name="malignant", seed=5, model_id=MODEL)
    report = {"verdict": "needs_review", "reasons": ["1 sample flagged"], "metrics": {}, "samples": [], "warnings": []}
    (layout.cohorts_dir() / COHORT / "report").mkdir(parents=True)
    (layout.cohorts_dir() / COHORT / "report" / "report.json").write_text(json.dumps(report))

    with session_factory()() as s:
        owner, owner_key = create_api_key(s, Role.requester, "owner")
        _, reviewer_key = create_api_key(s, Role.reviewer, "rita")
        _, stranger_key = create_api_key(s, Role.requester, "stranger")
        s.add(DatasetRecord(id=dataset_id, name="tiny", modality="US", spatial_dims=2,
                            classes=["benign", "malignant"], counts={}, meta={}, owner_id=owner.id))
        s.add(Job(id="job-train", kind=JobKind.train, status=JobStatus.succeeded, owner_id=owner.id,
                  target_id=MODEL, percent=100.0))
        s.add(Job(id="job-cohort", kind=JobKind.cohort, status=JobStatus.succeeded, owner_id=owner.id,
                  target_id=COHORT, percent=100.0))
        s.add(Job(id="job-running", kind=JobKind.cohort, status=JobStatus.running, owner_id=owner.id,
                  stage="train", percent=42.0, metrics={"loss_d": -0.5}))
        s.add(Job(id="job-failed", kind=JobKind.cohort, status=JobStatus.failed, owner_id=owner.id,
                  stage="validate", error="InvalidInputError: sample_dir: no manifest.csv"))
        s.flush()
        s.add(ModelRecordRow(id=MODEL, dataset_id=dataset_id, class_name="malignant", generator="wgan-gp",
                             steps=10, seed=5, status=JobStatus.succeeded, checkpoint_sha256="d" * 64,
                             job_id="job-train", owner_id=owner.id))
        s.flush()
        s.add(Cohort(id=COHORT, dataset_id=dataset_id, model_id=MODEL, class_name="malignant", generator="wgan-gp",
                     count=4, seed=5, format="png", status=CohortStatus.ready, verdict=Verdict.needs_review,
                     reasons=["1 sample flagged"], job_id="job-cohort", owner_id=owner.id))
        s.flush()
        for r in rows:
            i = int(r["index"])
            state = SampleState.held if i in FLAGGED else SampleState.rejected if i == 3 else SampleState.released
            flags = [{"kind": FLAGGED[i], "reason": "close to a training image", "score": 0.99}] if i in FLAGGED else []
            s.add(Sample(cohort_id=COHORT, index=i, file=r["file"], mask_file=None, sha256="0" * 64, flags=flags,
                         scores={"nn_distance": 0.1 + i}, state=state))
        s.commit()

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    yield {"url": url, "owner": owner_key, "reviewer": reviewer_key, "stranger": stranger_key,
           "images": images, "dataset_id": dataset_id}
    server.should_exit = True
    thread.join(timeout=10)


def test_review_then_download_gives_only_released_samples(api, tmp_path):
    owner = Client(api["url"], api["owner"])
    reviewer = Client(api["url"], api["reviewer"])
    cohort = owner.cohort(COHORT)
    assert (cohort["verdict"], cohort["released"], cohort["held"], cohort["rejected"]) == ("needs_review", 2, 1, 1)
    assert owner.report(COHORT)["verdict"] == "needs_review"
    assert [s["index"] for s in reviewer.flagged(COHORT)] == [1]

    first = owner.download(COHORT, tmp_path / "dl")
    assert first == tmp_path / "dl" / f"{COHORT}-png"
    assert sorted(p.name for p in (first / "images").iterdir()) == ["000000.png", "000002.png"]
    provenance = json.loads((first / "provenance.json").read_text())
    assert (provenance["model_id"], provenance["dataset_id"]) == (MODEL, api["dataset_id"])
    assert provenance["code_version"]["synthcohort"] == synthcohort.__version__
    assert provenance["code_version"]["source"] in ("checkout", "build", "unknown")
    assert verify_sha256sums(first) == 5  # 2 images + manifest, datalist, provenance

    reviewed = reviewer.review(COHORT, 1, "approve", "not a copy: different anatomy")
    assert reviewed["state"] == "released" and reviewed["reviews"][0]["reason"].startswith("not a copy")
    assert reviewer.flagged(COHORT) == []
    again = owner.download(COHORT, tmp_path / "dl", format="nifti", archive="tar")
    assert sorted(p.name for p in (again / "images").iterdir()) == ["000000.nii.gz", "000001.nii.gz", "000002.nii.gz"]
    provenance = json.loads((again / "provenance.json").read_text())
    assert provenance["reviews"][0]["reviewer_name"] == "rita"
    # Replacing a download of the same cohort and format leaves one verified folder, no temp files.
    owner.download(COHORT, tmp_path / "dl")
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [f"{COHORT}-nifti", f"{COHORT}-png"]
    assert len(list((tmp_path / "dl" / f"{COHORT}-png" / "images").iterdir())) == 3


def test_http_errors_carry_status_and_the_servers_detail(api, tmp_path):
    with pytest.raises(Unauthorized) as err:
        Client(api["url"], api_key="").cohort(COHORT)
    assert err.value.status == 401 and err.value.body["field"] == "X-API-Key"
    with pytest.raises(ApiNotFound) as err:  # a stranger may not see another's cohort
        Client(api["url"], api["stranger"]).cohort(COHORT)
    assert err.value.status == 404 and isinstance(err.value, NotFoundError) and COHORT in str(err.value)
    owner = Client(api["url"], api["owner"])
    with pytest.raises(Forbidden) as err:  # requesters do not review
        owner.review(COHORT, 1, "approve")
    assert err.value.status == 403 and "reviewer" in err.value.reason
    with pytest.raises(ApiConflict) as err:  # sample 0 was never flagged
        Client(api["url"], api["reviewer"]).review(COHORT, 0, "reject", "no")
    assert err.value.status == 409 and err.value.field == "index"
    with pytest.raises(SynthcohortError):
        owner.review(COHORT, 1, "maybe")
    assert not list(tmp_path.glob("dl*"))


def test_request_cohort_reuses_its_idempotency_key(api):
    owner = Client(api["url"], api["owner"])
    first = owner.request_cohort(model_id=MODEL, count=8, seed=3, idempotency_key="abc-1")
    replay = owner.request_cohort(model_id=MODEL, count=8, seed=3, idempotency_key="abc-1")
    other = owner.request_cohort(model_id=MODEL, count=8, seed=3)  # a fresh key: a new cohort
    assert first["id"] == replay["id"] and first["job_id"] == replay["job_id"]
    assert other["id"] != first["id"]
    assert owner.cohort(first["id"])["status"] == "queued"
    with pytest.raises(ApiConflict):  # the same key with another body
        owner.request_cohort(model_id=MODEL, count=9, seed=3, idempotency_key="abc-1")


def test_datasets_upload_register_and_listing(api, tmp_path):
    owner = Client(api["url"], api["owner"])
    assert [d["id"] for d in owner.datasets()] == [api["dataset_id"]]
    assert owner.dataset(api["dataset_id"])["classes"] == ["benign", "malignant"]
    upload = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(upload, **{f"{split}_{kind}": (rng.integers(0, 256, (6, 8, 8), dtype=np.uint8) if kind == "images"
                                            else rng.integers(0, 2, (6, 1)))
                        for split in ("train", "val", "test") for kind in ("images", "labels")})
    accepted = owner.upload_dataset(upload, name="tiny upload", modality="US", classes=["a", "b"], idempotency_key="up-1")
    again = owner.upload_dataset(upload, name="tiny upload", modality="US", classes=["a", "b"], idempotency_key="up-1")
    assert accepted["job_id"] == again["job_id"]
    assert owner.job(accepted["job_id"])["kind"] == "import"
    with pytest.raises(Forbidden):  # server paths are for admins
        owner.register_dataset(str(upload), name="breast")
    with pytest.raises(SynthcohortError) as err:
        owner.upload_dataset(tmp_path / "missing.npz")
    assert err.value.path.endswith("missing.npz")


def test_wait_returns_succeeded_and_raises_on_failed_or_timeout(api):
    owner = Client(api["url"], api["owner"])
    seen: list[Progress] = []
    assert owner.wait("job-cohort", timeout=5, poll=0.05, progress=seen.append)["status"] == "succeeded"
    assert seen[-1].percent == 100.0
    with pytest.raises(JobFailed) as err:
        owner.wait("job-failed", timeout=5, poll=0.05)
    assert "no manifest.csv" in str(err.value) and err.value.job["stage"] == "validate"
    seen.clear()
    t0 = time.monotonic()
    with pytest.raises(JobTimeout) as err:
        owner.wait("job-running", timeout=0.3, poll=0.1, progress=seen.append)
    assert 0.3 <= time.monotonic() - t0 < 5 and err.value.job["status"] == "running"
    assert seen[0].stage == "train" and seen[0].step == 42 and seen[0].metrics == {"loss_d": -0.5}


# --- misbehaving servers: checksum failure and retries -----------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers from the server's ``script``: a list of (status, body) used in order, the last
    repeated; status 0 drops the connection without an answer. Records every request."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        script = self.server.script
        status, payload = script.pop(0) if len(script) > 1 else script[0]
        if status == 0:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if payload[:1] == b"{" else "application/zip")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.script, server.seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _archive(tmp_path: Path, tamper: bool) -> bytes:
    rows = write_sample_dir(tmp_path / "s", np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32),
                            class_name="a", seed=1, model_id="m")
    released = [ReleasedSample(int(r["index"]), r["file"], None, "a", 1, "m", "c" * 64, {}) for r in rows]
    data = b"".join(stream_archive(tmp_path / "s", released, fmt="png", archive="zip", provenance={"classes": ["a"]}))
    if not tamper:
        return data
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == "images/000001.png":
                content = content[:-13] + bytes([content[-13] ^ 0x01]) + content[-12:]
            dst.writestr(info, content)
    return out.getvalue()


def test_download_with_a_checksum_mismatch_leaves_nothing(scripted, tmp_path):
    scripted.script = [(200, _archive(tmp_path, tamper=True))]
    client = Client(f"http://127.0.0.1:{scripted.server_port}", "k", retries=0)
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError) as err:
        client.download("coh-x", dest)
    assert err.value.path.endswith("images/000001.png")
    assert list(dest.iterdir()) == []  # no cohort folder, no partial archive, no staging folder
    scripted.script = [(200, _archive(tmp_path / "ok", tamper=False))]
    good = client.download("coh-x", dest)
    assert [p.name for p in dest.iterdir()] == [good.name] and (good / "images" / "000002.png").is_file()
    method, path, headers, _ = scripted.seen[-1]
    assert (method, path.split("?")[0], headers["X-API-Key"]) == ("GET", "/v1/cohorts/coh-x/download", "k")
    assert "format=png" in path and "archive=zip" in path


def test_retries_resend_the_same_idempotency_key(scripted, tmp_path):
    created = json.dumps({"id": "coh-9", "job_id": "job-9", "status": "queued"}).encode()
    scripted.script = [(0, b""), (503, b'{"error": "ServiceUnavailable", "detail": "broker down"}'), (202, created)]
    client = Client(f"http://127.0.0.1:{scripted.server_port}", "k", retries=3, backoff_s=0.01)
    assert client.request_cohort(model_id="mdl-1", count=4, seed=1)["id"] == "coh-9"
    posts = [h for m, _, h, _ in scripted.seen if m == "POST"]
    assert len(posts) == 3 and len({h["Idempotency-Key"] for h in posts}) == 1
    assert json.loads(scripted.seen[-1][3]) == {"count": 4, "seed": 1, "format": "png", "model_id": "mdl-1"}
    # An upload is retried with the file sent again from its start, under the same key.
    scripted.seen.clear()
    scripted.script = [(0, b""), (202, b'{"job_id": "job-up", "status": "queued"}')]
    upload = tmp_path / "data.npz"
    upload.write_bytes(b"NPZ-PAYLOAD-" * 1000)
    assert client.upload_dataset(upload, classes=["a", "b"], size=[32, 32])["job_id"] == "job-up"
    assert len(scripted.seen) == 2 and len({h["Idempotency-Key"] for _, _, h, _ in scripted.seen}) == 1
    for _, _, headers, body in scripted.seen:
        assert headers["Content-Type"].startswith("multipart/form-data")
        assert body.count(b"NPZ-PAYLOAD-") == 1000 and b"a,b" in body and b"32x32" in body
    # Out of retries: the last answer's status and detail come back as the error.
    scripted.seen.clear()
    scripted.script = [(503, b'{"error": "ServiceUnavailable", "detail": "broker down", "field": "job_id"}')]
    with pytest.raises(SynthcohortError) as err:
        client.request_cohort(model_id="mdl-1", count=4, seed=1)
    assert err.value.status == 503 and "broker down" in str(err.value) and err.value.field == "job_id"
    assert len(scripted.seen) == 4
