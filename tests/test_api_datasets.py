"""POST /v1/datasets: uploads streamed to the data root and vetted before a job exists
(oversized → 413, malformed or hostile archives → 422, nothing left behind), server paths
for admins, idempotent replays; GET lists what the dataset store holds."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.api_fixtures import Api, run_import, write_medmnist_npz

FIELDS = {"name": "tiny-upload", "modality": "US", "classes": "malignant,benign"}


def upload(api: Api, filename: str, content: bytes, who: str = "alice", idem: str = "auto",
           fields: dict | None = None):
    return api.post("/v1/datasets", who, json=None, idem=idem, data=FIELDS if fields is None else fields,
                    files={"file": (filename, content, "application/octet-stream")})


def uploaded_files(home: Path) -> list[Path]:
    return [p for p in (home / "uploads").rglob("*") if p.is_file()] if (home / "uploads").exists() else []


def test_upload_npz_makes_a_queued_import_job_and_the_file_imports(api: Api, tmp_path: Path,
                                                                   synthcohort_home: Path) -> None:
    from synthcohort.store.db import Job, JobKind

    content = write_medmnist_npz(tmp_path / "mine.npz").read_bytes()
    r = upload(api, "mine.npz", content, idem="up-1")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    with api.session() as s:
        job = s.get(Job, r.json()["job_id"])
        assert job.kind == JobKind.import_dataset and job.owner_id == api.key_ids["alice"]
        request = dict(job.request)
    stored = Path(request["path"])
    assert stored.is_relative_to(synthcohort_home / "uploads") and stored.read_bytes() == content
    assert request["classes"] == ["malignant", "benign"] and request["name"] == "tiny-upload"
    # a retry of the same upload: same job, no second job, the retry's copy is discarded
    again = upload(api, "mine.npz", content, idem="up-1")
    assert again.status_code == 202 and again.json()["job_id"] == r.json()["job_id"]
    assert api.counts()["jobs"] == 1 and uploaded_files(synthcohort_home) == [stored]
    other = upload(api, "mine.npz", content[:-8] + b"\0" * 8, idem="up-1")
    assert other.status_code == 409 and uploaded_files(synthcohort_home) == [stored]
    # what the worker does with it: its real import task; the upload is removed afterwards
    done = run_import(r.json()["job_id"])
    assert done["status"] == "succeeded", done
    assert uploaded_files(synthcohort_home) == []
    listing = api.get("/v1/datasets", "alice").json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == done["target_id"]
    assert listing["items"][0]["classes"] == ["malignant", "benign"]
    assert api.get(f"/v1/datasets/{done['target_id']}", "alice").json()["modality"] == "US"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_with_symlink() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("data/link.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    return buf.getvalue()


def _pickled_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, train_images=np.array([{"a": 1}], dtype=object))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("filename", "content", "fields", "status", "needle"),
    [
        ("broken.zip", b"PK\x03\x04 this is not a zip", None, 422, "zip"),
        ("escape.zip", _zip({"../../evil.png": b"x" * 10}), None, 422, "'..'"),
        ("abs.zip", _zip({"/etc/cron.d/evil": b"x"}), None, 422, "absolute"),
        ("link.tar", _tar_with_symlink(), None, 422, "symbolic link"),
        ("empty.zip", _zip({}), None, 422, "no files"),
        ("objects.npz", _pickled_npz(), None, 422, "pickle"),
        ("notes.exe", b"MZ....", None, 422, "not an accepted upload"),
        ("ok.npz", b"", None, 422, "empty"),
        ("ok.npz", b"PK", {**FIELDS, "colour": "red"}, 422, "colour"),
        ("ok.npz", b"PK", {**FIELDS, "modality": "PET"}, 422, "modality"),
        ("ok.npz", b"PK", {**FIELDS, "size": "huge"}, 422, "size"),
    ],
)
def test_bad_upload_is_4xx_with_reason_and_leaves_no_job_and_no_file(
    api: Api, synthcohort_home: Path, filename: str, content: bytes, fields: dict | None, status: int, needle: str
) -> None:
    r = upload(api, filename, content, fields=fields)
    assert r.status_code == status, r.text
    body = r.json()
    assert needle in body["detail"] or needle == body.get("field"), body
    assert "uploads" not in r.text  # server paths never leak into the reason
    assert api.counts()["jobs"] == 0
    assert uploaded_files(synthcohort_home) == []
    assert not list(synthcohort_home.parent.rglob("evil*"))


@pytest.mark.parametrize("size", [100 * 1024, 600 * 1024], ids=["counted-while-streaming", "content-length"])
def test_oversized_upload_is_413_and_removed(api: Api, synthcohort_home: Path, monkeypatch, size: int) -> None:
    from synthcohort.core.settings import get_settings

    monkeypatch.setenv("SYNTHCOHORT_MAX_UPLOAD_BYTES", "4096")
    get_settings.cache_clear()
    r = upload(api, "big.npz", b"\0" * size)
    assert r.status_code == 413 and r.json()["error"] == "TooLargeError" and "4096" in r.json()["detail"]
    assert api.counts()["jobs"] == 0 and uploaded_files(synthcohort_home) == []


def test_admin_registers_a_server_path(api: Api, tmp_path: Path) -> None:
    from synthcohort.store.db import Job

    npz = write_medmnist_npz(tmp_path / "server.npz")
    r = api.post("/v1/datasets", "admin", {"path": str(npz), "modality": "US", "size": [16, 16]}, idem="p-1")
    assert r.status_code == 202, r.text
    with api.session() as s:
        job = s.get(Job, r.json()["job_id"])
        assert job.request["path"] == str(npz.resolve()) and job.request["upload"] is False
    assert api.post("/v1/datasets", "admin", {"path": str(npz), "modality": "US", "size": [16, 16]},
                    idem="p-1").json() == r.json()
    bad = api.post("/v1/datasets", "admin", {"path": str(npz), "size": [2, 2]})
    assert bad.status_code == 422 and bad.json()["field"] == "size"
    assert api.counts()["jobs"] == 1
