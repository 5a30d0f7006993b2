"""The API over real HTTP: uvicorn on a free port in a thread, httpx as the client.

What only a real server shows: a chunked upload (no Content-Length) is parsed as it streams
and cut off at ``max_upload_bytes`` with a 413 JSON body, and headers (X-API-Key,
Idempotency-Key, Idempotent-Replayed) survive a real round trip."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_fixtures import write_medmnist_npz


@pytest.fixture
def live(db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, str]]]:  # noqa: F811
    from synthcohort.api.app import create_app
    from synthcohort.api.keys import create_api_key
    from synthcohort.core.settings import get_settings
    from synthcohort.store.db import Role, session_factory
    from synthcohort.store.migrate import upgrade_database

    monkeypatch.setenv("SYNTHCOHORT_BROKER_URL", redis_url)
    monkeypatch.setenv("SYNTHCOHORT_MAX_UPLOAD_BYTES", str(64 * 1024))
    get_settings.cache_clear()
    upgrade_database()
    with session_factory()() as s:
        keys = {role.value: create_api_key(s, role, role.value)[1] for role in Role}
    from synthcohort.workers.process import ApiThread

    server = ApiThread(create_app()).start()
    try:
        yield server.url, keys
    finally:
        server.stop()


def multipart_chunks(boundary: str, filename: str, content: bytes, fields: dict[str, str],
                     chunk: int = 8192) -> Iterator[bytes]:
    """A multipart body yielded in pieces, so httpx sends it chunked (no Content-Length)."""
    for name, value in fields.items():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    for i in range(0, len(content), chunk):
        yield content[i:i + chunk]
    yield f"\r\n--{boundary}--\r\n".encode()


def post_chunked(url: str, key: str, filename: str, content: bytes) -> httpx.Response:
    boundary = uuid.uuid4().hex
    headers = {"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex,
               "Content-Type": f"multipart/form-data; boundary={boundary}"}
    body = multipart_chunks(boundary, filename, content, {"modality": "US", "classes": "malignant,benign"})
    return httpx.post(f"{url}/v1/datasets", content=body, headers=headers, timeout=60)


def test_chunked_upload_streams_and_is_cut_at_the_limit(live, tmp_path: Path, synthcohort_home: Path) -> None:
    url, keys = live
    small = write_medmnist_npz(tmp_path / "small.npz", n=6, size=8).read_bytes()
    assert len(small) < 64 * 1024
    ok = post_chunked(url, keys["requester"], "small.npz", small)
    assert ok.status_code == 202, ok.text
    stored = [p for p in (synthcohort_home / "uploads").rglob("*.npz")]
    assert len(stored) == 1 and stored[0].read_bytes() == small
    big = post_chunked(url, keys["requester"], "big.npz", b"\1" * (300 * 1024))
    assert big.status_code == 413, big.text
    assert big.json()["error"] == "TooLargeError" and big.json()["field"] == "file"
    assert [p for p in (synthcohort_home / "uploads").rglob("*") if p.is_file()] == stored  # partial file removed


def test_auth_and_idempotency_over_http(live, dataset_id: str) -> None:
    url, keys = live
    assert httpx.get(f"{url}/v1/models").status_code == 401
    body = {"dataset_id": dataset_id, "class_name": "benign", "generator": "wgan-gp", "steps": 2}
    with httpx.Client(base_url=url, headers={"X-API-Key": keys["requester"]}, timeout=120) as c:
        first = c.post("/v1/models", json=body, headers={"Idempotency-Key": "same"})
        again = c.post("/v1/models", json=body, headers={"Idempotency-Key": "same"})
        assert first.status_code == again.status_code == 202, first.text
        assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
        assert c.get("/v1/jobs").json()["total"] == 1
        job = c.get(f"/v1/jobs/{first.json()['job_id']}").json()
        assert job["status"] == "queued" and job["kind"] == "train"


def test_concurrent_retries_with_one_idempotency_key_make_one_job(live, dataset_id: str) -> None:
    """A client that retries before the first answer arrived: the unique (owner, key) index
    decides; every request gets the one job."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from synthcohort.store.db import Job, session_factory

    url, keys = live
    body = {"dataset_id": dataset_id, "class_name": "benign", "generator": "wgan-gp", "steps": 2}

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{url}/v1/models", json=body, timeout=120,
                          headers={"X-API-Key": keys["requester"], "Idempotency-Key": "burst"})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, range(4)))
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    assert len({a.json()["job_id"] for a in answers}) == 1
    with session_factory()() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1
