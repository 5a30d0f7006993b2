"""Fixtures of the API tests (tests/test_api_*.py, test_db_*.py, test_keys.py).

* ``db_url`` — parametrised: the default SQLite file in the test's data root, and PostgreSQL in
  this session's own database (``tests.service_fixtures.postgres_url``), emptied before each test.
* ``api`` — FastAPI's TestClient on ``create_app()`` (lifespan run, so the DB is migrated), with
  one key per role and helpers to count rows. Real HTTP (uvicorn) is used in test_api_http.py.
* ``dataset_id`` — a real dataset version (MedMNIST-format npz → ``store.ingest.import_path``),
  imported once per session and copied into each test's data root.

Jobs are sent by the real ``workers.dispatch.enqueue_job`` to this session's Redis DB
(``tests.service_fixtures.redis_url``); no worker consumes them, so they stay ``queued``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from synthcohort.core import layout
from tests.service_fixtures import postgres_url, redis_url  # noqa: F401 - fixtures re-exported

TABLES = ("reviews", "samples", "cohorts", "models", "dataset_grants", "datasets", "jobs", "api_keys")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, synthcohort_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from synthcohort.core.settings import get_settings
    from synthcohort.store.db import engine_for
    from synthcohort.store.migrate import upgrade_database

    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("SYNTHCOHORT_DATABASE_URL", url)
        get_settings.cache_clear()
        upgrade_database(url)
        with engine_for(url).begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        return url
    return get_settings().sqlalchemy_url()


@dataclass
class Api:
    """A TestClient plus the keys and a session factory on the same database."""

    client: TestClient
    url: str
    keys: dict[str, str] = field(default_factory=dict)  # name → plain key
    key_ids: dict[str, int] = field(default_factory=dict)

    def headers(self, who: str, idem: str | None = None) -> dict[str, str]:
        h = {"X-API-Key": self.keys[who]}
        if idem is not None:
            h["Idempotency-Key"] = idem
        return h

    def post(self, path: str, who: str, json: Any = None, idem: str | None = "auto", **kw: Any):
        idem = uuid.uuid4().hex if idem == "auto" else idem
        return self.client.post(path, json=json, headers=self.headers(who, idem), **kw)

    def get(self, path: str, who: str, **kw: Any):
        return self.client.get(path, headers=self.headers(who), **kw)

    def session(self):
        from synthcohort.store.db import session_factory

        return session_factory(self.url)()

    def count(self, model: type) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(model)))

    def counts(self) -> dict[str, int]:
        from synthcohort.store.db import (
            Cohort,
            DatasetRecord,
            Job,
            ModelRecordRow,
            Review,
            Sample,
        )

        return {m.__tablename__: self.count(m) for m in (Job, ModelRecordRow, Cohort, Sample, Review, DatasetRecord)}


@pytest.fixture
def api(db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:  # noqa: F811
    from synthcohort.api.app import create_app
    from synthcohort.api.keys import create_api_key
    from synthcohort.core.settings import get_settings
    from synthcohort.store.db import Role, session_factory

    monkeypatch.setenv("SYNTHCOHORT_BROKER_URL", redis_url)
    get_settings.cache_clear()

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        a = Api(client=client, url=db_url)
        with session_factory(db_url)() as s:
            for who, role in (("admin", Role.admin), ("reviewer", Role.reviewer),
                              ("alice", Role.requester), ("bob", Role.requester)):
                row, a.keys[who] = create_api_key(s, role, who)
                a.key_ids[who] = row.id
        yield a


def write_medmnist_npz(path: Path, *, n: int = 10, size: int = 16, seed: int = 0) -> Path:
    """A small file in MedMNIST's layout (uint8 images, (N, 1) labels, three splits)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", n), ("val", max(2, n // 3)), ("test", max(2, n // 3))):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="session")
def dataset_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(folder of one committed dataset version, its id); imported once per session."""
    from synthcohort.store.datasets import DatasetStore
    from synthcohort.store.ingest import import_path

    root = tmp_path_factory.mktemp("dataset-template")
    npz = write_medmnist_npz(root / "tinymnist.npz")
    version = import_path(npz, name="tiny", modality="US", classes=["malignant", "benign"],
                          store=DatasetStore(root / "datasets"))
    return version.path, version.id


@pytest.fixture
def dataset_id(dataset_template: tuple[Path, str], synthcohort_home: Path, db_url: str) -> str:
    """A dataset version in this test's data root, recorded as an admin would share a version
    imported on the server (``shared``), so every key may use it."""
    from synthcohort.api.services.datasets import record_from_meta
    from synthcohort.store.datasets import DatasetStore
    from synthcohort.store.db import session_factory
    from synthcohort.store.migrate import upgrade_database

    src, ds_id = dataset_template
    shutil.copytree(src, layout.datasets_dir() / ds_id)
    upgrade_database(db_url)
    with session_factory(db_url)() as s:
        row = record_from_meta(DatasetStore().get(ds_id).meta)
        row.shared = True
        s.add(row)
        s.commit()
    return ds_id


def run_import(job_id: str) -> dict:
    """Run a queued import job as the worker would (its real Celery task, in this process)."""
    from synthcohort.workers.tasks import import_dataset

    import_dataset.apply(args=[job_id])
    from synthcohort.store.db import Job, session_factory

    with session_factory()() as s:
        job = s.get(Job, job_id)
        return {"status": job.status.value, "target_id": job.target_id, "error": job.error}
