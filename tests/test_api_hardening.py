"""Issue 20, part A: each finding of the attacker's probe as a test through the real app (real
DB, SQLite and PostgreSQL, real files): datasets stay with their importers unless an admin
shares them, no response carries a server path, upload members that clash, are too long or
expand too far are 4xx naming the member, NIfTI/DICOM headers are checked at the upload, a
failed import names the upload's member and removes the upload, and the small ones (truncated
JSON, the ``validation.`` prefix, a replay's time zone)."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.api_fixtures import Api, run_import, write_medmnist_npz

FIELDS = {"name": "tiny-upload", "modality": "US", "classes": "malignant,benign"}
MODEL = {"class_name": "malignant", "generator": "wgan-gp", "steps": 5, "seed": 3}
COHORT = {"class_name": "malignant", "generator": "wgan-gp", "train_steps": 4, "count": 8, "seed": 7}


def upload(api: Api, filename: str, content: bytes, who: str = "alice", fields: dict | None = None):
    return api.post("/v1/datasets", who, data=FIELDS if fields is None else fields,
                    files={"file": (filename, content, "application/octet-stream")})


def left_in_uploads(home: Path) -> list[Path]:
    return [p for p in (home / "uploads").rglob("*")] if (home / "uploads").exists() else []


def zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def assert_refused(api: Api, home: Path, r, status: int, member: str | None) -> dict:
    """4xx JSON naming the member (and the upload, never a server path); nothing recorded or left."""
    assert r.status_code == status, r.text
    body = r.json()
    if member is not None:
        assert body["member"] == member, body
    assert str(home) not in r.text and "/uploads/" not in r.text and "/tmp/" not in r.text
    assert api.counts()["jobs"] == 0 and left_in_uploads(home) == []
    return body


# ------------------------------------------------------------------ finding 1: datasets cross tenants
def test_datasets_are_seen_and_used_only_by_their_importers_or_when_shared(api: Api, tmp_path: Path,
                                                                             synthcohort_home: Path) -> None:
    from synthcohort.store.db import DatasetRecord

    content = write_medmnist_npz(tmp_path / "breastmnist.npz").read_bytes()
    job = upload(api, "breastmnist.npz", content).json()["job_id"]
    done = run_import(job)
    assert done["status"] == "succeeded", done
    ds = done["target_id"]

    mine = api.get(f"/v1/datasets/{ds}", "alice")
    assert mine.status_code == 200 and mine.json()["shared"] is False
    assert mine.json()["meta"]["source"]["path"] == "breastmnist.npz"  # the upload's own name only
    assert str(synthcohort_home) not in mine.text and "uploads" not in mine.text
    assert api.get("/v1/datasets", "alice").json()["total"] == 1

    # bob: not in the list, 404 for the one, and he cannot train or sample on it
    assert api.get("/v1/datasets", "bob").json()["total"] == 0
    for r in (api.get(f"/v1/datasets/{ds}", "bob"), api.post("/v1/models", "bob", {"dataset_id": ds, **MODEL}),
              api.post("/v1/cohorts", "bob", {"dataset_id": ds, **COHORT})):
        assert r.status_code == 404 and r.json()["field"] == "dataset_id", r.text
    assert api.get("/v1/datasets", "reviewer").json()["total"] == 0
    assert api.get(f"/v1/datasets/{ds}", "reviewer").status_code == 404
    assert api.counts()["models"] == 0 and api.counts()["cohorts"] == 0 and api.counts()["jobs"] == 1

    # only an admin shares, and that is recorded; then bob may use it
    no = api.client.patch(f"/v1/datasets/{ds}", json={"shared": True}, headers=api.headers("alice"))
    assert no.status_code == 403 and no.json()["field"] == "shared"
    assert api.client.patch(f"/v1/datasets/{ds}", json={"shared": "yes please"},
                            headers=api.headers("admin")).status_code == 422
    ok = api.client.patch(f"/v1/datasets/{ds}", json={"shared": True}, headers=api.headers("admin"))
    assert ok.status_code == 200 and ok.json()["shared"] is True
    with api.session() as s:
        row = s.get(DatasetRecord, ds)
        assert row.shared and row.shared_by == api.key_ids["admin"] and row.shared_at is not None
    assert api.get("/v1/datasets", "bob").json()["total"] == 1
    assert api.post("/v1/models", "bob", {"dataset_id": ds, **MODEL}).status_code == 202

    # unshared again: bob loses it, unless he imports the same data himself (same content id)
    api.client.patch(f"/v1/datasets/{ds}", json={"shared": False}, headers=api.headers("admin"))
    assert api.get(f"/v1/datasets/{ds}", "bob").status_code == 404
    again = run_import(upload(api, "breastmnist.npz", content, who="bob").json()["job_id"])
    assert again == {**again, "status": "succeeded", "target_id": ds}
    assert api.get(f"/v1/datasets/{ds}", "bob").status_code == 200
    assert api.get(f"/v1/datasets/{ds}", "reviewer").status_code == 404
    assert api.get(f"/v1/datasets/{ds}", "admin").status_code == 200
    # a reviewer sees (for the review page), but cannot use, the dataset of a cohort to review
    assert api.post("/v1/cohorts", "alice", {"dataset_id": ds, **COHORT}).status_code == 202
    assert api.get(f"/v1/datasets/{ds}", "reviewer").status_code == 200
    assert api.get("/v1/datasets", "reviewer").json()["total"] == 1
    assert api.post("/v1/models", "reviewer", {"dataset_id": ds, **MODEL}).status_code == 404


# ------------------------------------------------------------------ finding 3: two 500s on uploads
@pytest.mark.parametrize(("members", "member", "words"), [
    ([("x", b"a file"), ("x/y.png", b"png")], "x/y.png", "which is a file"),
    ([("x/y.png", b"png"), ("x", b"a file")], "x", "also a folder"),
    ([("d/a.png", b"1"), ("d/a.png", b"2")], "d/a.png", "appears twice"),
    ([("f" * 300 + "/y.png", b"png")], "f" * 300 + "/y.png", "longer than 255 bytes"),
    ([("/".join(["abcdefghij"] * 120) + "/y.png", b"png")], "/".join(["abcdefghij"] * 120) + "/y.png",
     "path longer"),
], ids=["file-then-dir", "dir-then-file", "duplicate", "300-char-folder", "deep-path"])
def test_clashing_or_too_long_member_names_are_422_naming_the_member(api: Api, synthcohort_home: Path,
                                                                      members, member: str, words: str) -> None:
    r = upload(api, "clash.zip", zip_bytes(members))
    body = assert_refused(api, synthcohort_home, r, 422, member)
    assert words in body["detail"] and body["path"] == "clash.zip"


def test_extraction_errors_leave_the_target_empty(tmp_path: Path, synthcohort_home: Path) -> None:
    """The store's extraction itself (CLI and worker path): an error, never a second one."""
    from synthcohort.core.errors import InvalidInputError
    from synthcohort.store.archives import extract_archive

    archive = tmp_path / "clash.zip"
    archive.write_bytes(zip_bytes([("a/ok.png", b"1"), ("x", b"file"), ("x/y.png", b"png")]))
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(InvalidInputError) as e:
        extract_archive(archive, target)
    assert e.value.member == "x/y.png" and list(target.iterdir()) == []


# ------------------------------------------------------------------ finding 4: npz size limit
def _bomb_npz(tmp_path: Path) -> bytes:
    """62 KB that np.load would expand to 60 MB."""
    path = tmp_path / "bomb.npz"
    zeros = np.zeros((7500, 100, 80), np.uint8)
    np.savez_compressed(path, train_images=zeros, train_labels=np.zeros((7500, 1), np.uint8))
    return path.read_bytes()


def test_npz_members_are_checked_by_their_header_before_reading(api: Api, tmp_path: Path, synthcohort_home: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcohort.core.errors import TooLargeError
    from synthcohort.core.settings import get_settings
    from synthcohort.store.ingest import import_path

    content = _bomb_npz(tmp_path)
    assert len(content) < 200_000
    monkeypatch.setenv("SYNTHCOHORT_MAX_FILE_BYTES", str(10 * 2**20))
    get_settings.cache_clear()
    body = assert_refused(api, synthcohort_home, upload(api, "bomb.npz", content), 413, "train_images.npy")
    assert "60000000 bytes" in body["detail"] and "max_file_bytes" in body["detail"]
    # the import itself (CLI, worker) refuses it the same way, before decompressing
    (tmp_path / "server.npz").write_bytes(content)
    with pytest.raises(TooLargeError) as e:
        import_path(tmp_path / "server.npz", modality="US")
    assert e.value.member == "train_images.npy"
    # the total is guarded too: each member under the per-file limit, together over the upload limit
    monkeypatch.setenv("SYNTHCOHORT_MAX_FILE_BYTES", str(100 * 2**20))
    monkeypatch.setenv("SYNTHCOHORT_MAX_UPLOAD_BYTES", str(50 * 2**20))
    get_settings.cache_clear()
    body = assert_refused(api, synthcohort_home, upload(api, "bomb.npz", content), 413, None)
    assert "max_upload_bytes" in body["detail"]


# ------------------------------------------------------------------ finding 7: late and leaky import errors
def _nifti_bytes(shared_data: Path) -> bytes:
    return gzip.decompress((shared_data / "hippocampus" / "images" / "hippocampus_001.nii.gz").read_bytes())


def _bad_nifti(shared_data: Path, damage: str) -> bytes:
    raw = bytearray(_nifti_bytes(shared_data))
    if damage == "sizeof_hdr":
        raw[0:4] = struct.pack("<i", 350)
    elif damage == "huge":
        raw[42:48] = struct.pack("<hhh", 30000, 30000, 30000)  # dim[1..3]
    else:  # truncated
        raw = raw[: len(raw) // 2]
    return bytes(raw)


def _truncated_dicom(shared_data: Path) -> bytes:
    first = sorted((shared_data / "dicom" / "study1_hippocrop").iterdir())[0]
    return first.read_bytes()[:-400]


@pytest.mark.shared_data
@pytest.mark.parametrize(("make", "member", "status", "words"), [
    (lambda d: _bad_nifti(d, "sizeof_hdr"), "data/img.nii", 422, "sizeof_hdr"),
    (lambda d: _bad_nifti(d, "huge"), "data/img.nii", 413, "30000×30000×30000"),
    (lambda d: _bad_nifti(d, "truncated"), "data/img.nii", 422, "truncated"),
    (lambda d: gzip.compress(_bad_nifti(d, "truncated")), "data/img.nii.gz", 422, "truncated"),
    (_truncated_dicom, "data/slice.dcm", 422, "truncated"),
], ids=["nifti-sizeof_hdr", "nifti-30000-cubed", "nifti-truncated", "nifti-gz-truncated", "dicom-truncated"])
def test_bad_nifti_or_dicom_is_refused_at_the_upload(api: Api, shared_data: Path, synthcohort_home: Path,
                                                     make, member: str, status: int, words: str) -> None:
    r = upload(api, "scans.zip", zip_bytes([(member, make(shared_data))]), fields={"modality": "MR"})
    body = assert_refused(api, synthcohort_home, r, status, member)
    assert words in body["detail"] and body["path"] == "scans.zip"


@pytest.mark.shared_data
def test_the_import_itself_refuses_a_wrong_sizeof_hdr_naming_the_member(shared_data: Path, tmp_path: Path,
                                                                       synthcohort_home: Path) -> None:
    """A server-path or CLI import runs the same header checks (nibabel would fix it silently)."""
    from synthcohort.core.errors import InvalidInputError
    from synthcohort.store.ingest import import_path

    archive = tmp_path / "scans.zip"
    archive.write_bytes(zip_bytes([("data/img.nii", _bad_nifti(shared_data, "sizeof_hdr"))]))
    with pytest.raises(InvalidInputError) as e:
        import_path(archive, modality="MR")
    assert e.value.member == "data/img.nii" and "sizeof_hdr=350" in e.value.reason
    assert e.value.path == str(archive) and "/tmp/" not in e.value.reason


def test_an_import_failing_in_the_worker_names_the_member_and_removes_the_upload(
        api: Api, synthcohort_home: Path) -> None:
    """What the upload check cannot see cheaply (a PNG's content) fails in the worker: the
    job's error names ``upload <name>, member <path>``, and the upload is gone."""
    content = zip_bytes([("pics/benign/a.png", b"not a png at all"), ("pics/malignant/b.png", b"nor this")])
    r = upload(api, "pics.zip", content, fields={"modality": "US"})
    assert r.status_code == 202, r.text
    assert left_in_uploads(synthcohort_home)
    done = run_import(r.json()["job_id"])
    assert done["status"] == "failed"
    assert done["error"].startswith("upload pics.zip, member pics/"), done
    assert str(synthcohort_home) not in done["error"] and "/tmp/" not in done["error"]
    job = api.get(f"/v1/jobs/{r.json()['job_id']}", "alice").json()
    assert job["error"] == done["error"]
    assert left_in_uploads(synthcohort_home) == []
    assert api.counts()["datasets"] == 0


# ------------------------------------------------------------------ finding 8: the small ones
def test_truncated_json_names_the_body_not_a_byte_offset(api: Api) -> None:
    r = api.client.post("/v1/cohorts", content=b'{"dataset_id": "ds-1", "cl',
                        headers={**api.headers("alice", "j-1"), "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body" and "not valid JSON" in r.json()["detail"]
    assert api.counts()["jobs"] == 0


@pytest.mark.parametrize(("validation", "field"), [
    ({"dc_k": 0}, "validation.dc_k"), ({"bins_alpha": "x"}, "validation.bins_alpha"),
    ({"nonsense": 1}, "validation.nonsense"), ({"similarity_threshold": 0.1}, "validation.similarity_threshold"),
    ({"dc_k": 200}, "validation.dc_k"),
])
def test_errors_inside_validation_keep_the_prefix(api: Api, dataset_id: str, validation: dict, field: str) -> None:
    r = api.post("/v1/cohorts", "alice", {"dataset_id": dataset_id, **COHORT, "validation": validation})
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert api.counts()["jobs"] == 0 and api.counts()["cohorts"] == 0


def test_a_replayed_cohort_keeps_its_time_zone(api: Api, dataset_id: str) -> None:
    body = {"dataset_id": dataset_id, **COHORT}
    first = api.post("/v1/cohorts", "alice", body, idem="tz-1")
    again = api.post("/v1/cohorts", "alice", body, idem="tz-1")
    assert first.status_code == again.status_code == 202
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["created_at"] == first.json()["created_at"]
    assert first.json()["created_at"].endswith(("Z", "+00:00"))
    shown = api.get(f"/v1/cohorts/{first.json()['id']}", "alice").json()["created_at"]
    assert shown == first.json()["created_at"]
