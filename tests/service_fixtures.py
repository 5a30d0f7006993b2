"""Shared fixtures for the service tests (API, workers, delivery): real PostgreSQL, real Redis,
a real uvicorn server and real worker processes.

Other engineers run their tests against the same PostgreSQL and Redis at the same time, so:

* ``postgres_url`` creates a database ``synthcohort_<hex>`` per test session (AUTOCOMMIT
  ``CREATE DATABASE``) and drops it at the end; ``SYNTHCOHORT_TEST_POSTGRES_URL`` overrides the
  server URL.
* ``redis_url`` claims a Redis DB number 1..15 that no other session holds (a ``SET NX`` lock
  key with a TTL inside that DB), flushes it, and frees it at the end;
  ``SYNTHCOHORT_TEST_REDIS_URL`` overrides the server.

Use in a test module::

    from tests.service_fixtures import postgres_url, redis_url, service  # noqa: F401

    def test_x(service):
        stack = service(broker="redis", database="postgres")  # or "embedded" / "sqlite"
        r = stack.client.get("/v1/jobs/...")                  # httpx.Client on the live server
        stack.start_worker()                                   # a real `synthcohort worker`

Missing servers skip the test locally and fail it in CI.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from synthcohort.workers.process import ApiThread, wait_worker_ready

POSTGRES_SERVER = os.environ.get("SYNTHCOHORT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_SERVER = os.environ.get("SYNTHCOHORT_TEST_REDIS_URL", "redis://127.0.0.1:6379")
WORKER_READY_S = 120.0


def _unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not reachable (required in CI)")
    pytest.skip(f"{what} is not reachable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PostgreSQL -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(POSTGRES_SERVER)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"synthcohort_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        admin.dispose()
        _unavailable(f"PostgreSQL at {server.render_as_string(hide_password=True)} ({exc.__class__.__name__})")
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from synthcohort.store.db import engine_for

        try:
            engine_for(url).dispose()
        except Exception:  # noqa: BLE001
            pass
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- Redis ------------------------------------------------------------------------------------
LOCK_KEY = "synthcohort:test-session-lock"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://…/N`` with a DB number held only by this session, flushed before and after."""
    import redis

    token = uuid.uuid4().hex
    chosen = None
    try:
        for n in secrets.SystemRandom().sample(range(1, 16), 15):
            client = redis.Redis.from_url(f"{REDIS_SERVER}/{n}", socket_connect_timeout=2)
            if client.set(LOCK_KEY, token, nx=True, ex=3600):
                chosen = (n, client)
                break
            client.close()
    except redis.exceptions.ConnectionError:
        _unavailable(f"Redis at {REDIS_SERVER}")
    if chosen is None:
        pytest.skip("all Redis DB numbers 1..15 are held by other test sessions")
    n, client = chosen
    for key in client.scan_iter():
        if key != LOCK_KEY.encode():
            client.delete(key)
    try:
        yield f"{REDIS_SERVER}/{n}"
    finally:
        client.flushdb()
        client.close()


# -- the live service -------------------------------------------------------------------------
@dataclass
class ServiceStack:
    """One running service: API thread, workers, keys; what a test talks to."""

    home: Path
    env: dict[str, str]
    api: ApiThread
    keys: dict[str, str]  # role → plain API key
    workers: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.api.url

    def client_for(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[role]}, timeout=60.0)

    def start_worker(self, queues: str = "gpu,cpu", wait: bool = True) -> subprocess.Popen:
        from synthcohort.workers.process import spawn_worker

        log = self.home / f"worker-{len(self.workers)}.log"
        proc = spawn_worker(queues, env=self.env, logfile=log)
        self.workers.append(proc)
        self.logs.append(log)
        if wait:
            wait_worker_ready(proc, log, WORKER_READY_S)
        return proc

    def worker_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}" for p in self.logs if p.exists())

    def wait_job(self, job_id: str, *, role: str = "admin", timeout: float = 300.0,
                 until: Callable[[dict], bool] | None = None) -> dict:
        """Poll ``GET /v1/jobs/{id}`` until it ends (or ``until(job)``); fails with the worker logs."""
        deadline = time.monotonic() + timeout
        with self.client_for(role) as c:
            while True:
                r = c.get(f"/v1/jobs/{job_id}")
                assert r.status_code == 200, r.text
                job = r.json()
                if until is not None and until(job):
                    return job
                if until is None and job["status"] in ("succeeded", "failed", "cancelled"):
                    return job
                if time.monotonic() > deadline:
                    raise AssertionError(f"job {job_id} still {job} after {timeout:.0f} s\n{self.worker_logs()}")
                time.sleep(0.5)

    def stop(self) -> None:
        from synthcohort.workers.process import stop_worker

        for proc in self.workers:
            stop_worker(proc, timeout=10)
        self.api.stop()


@pytest.fixture
def service(synthcohort_home: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
            ) -> Iterator[Callable[..., ServiceStack]]:
    """Factory: ``service(broker="redis"|"embedded", database="postgres"|"sqlite")`` starts the
    API (uvicorn thread) on this test's data root and makes one key per role; workers are
    started by the test (``stack.start_worker()``). Everything is stopped at teardown."""
    stacks: list[ServiceStack] = []

    def make(broker: str = "embedded", database: str = "sqlite") -> ServiceStack:
        from synthcohort.api.app import create_app
        from synthcohort.api.keys import create_api_key
        from synthcohort.core.settings import get_settings
        from synthcohort.store.db import Role, session_factory
        from synthcohort.store.migrate import upgrade_database

        if database == "postgres":
            monkeypatch.setenv("SYNTHCOHORT_DATABASE_URL", request.getfixturevalue("postgres_url"))
        if broker == "redis":
            monkeypatch.setenv("SYNTHCOHORT_BROKER_URL", request.getfixturevalue("redis_url"))
        monkeypatch.setenv("SYNTHCOHORT_DEVICE", "cpu")
        get_settings.cache_clear()
        upgrade_database()
        keys = {}
        with session_factory()() as s:
            for role in Role:
                _, keys[role.value] = create_api_key(s, role, f"test-{role.value}-{secrets.token_hex(3)}")
        env = {k: v for k, v in os.environ.items()}
        env.update({"SYNTHCOHORT_HOME": str(synthcohort_home), "SYNTHCOHORT_DEVICE": "cpu",
                    "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2")})
        api = ApiThread(create_app()).start()
        stack = ServiceStack(home=synthcohort_home, env=env, api=api, keys=keys)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


__all__ = ["postgres_url", "redis_url", "service", "ServiceStack", "ApiThread", "free_port",
           "wait_worker_ready"]
