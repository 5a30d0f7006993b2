"""``synthcohort serve``: migrates the DB, serves the API, starts one worker, and stops that
worker when the server stops (a real subprocess, real HTTP)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.service_fixtures import free_port

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_runs_api_and_worker_and_stops_both(synthcohort_home: Path, redis_url: str,  # noqa: F811
                                                  tmp_path: Path) -> None:
    from synthcohort.store.migrate import head_revision

    port = free_port()
    env = {**os.environ, "SYNTHCOHORT_HOME": str(synthcohort_home), "SYNTHCOHORT_BROKER_URL": redis_url,
           "SYNTHCOHORT_DEVICE": "cpu"}
    err = open(tmp_path / "serve.err", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "synthcohort", "serve", "--port", str(port)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        err.seek(0)
        log = err.read()
        assert health is not None and health.status_code == 200, log
        assert health.json()["database_revision"] == head_revision()  # migrated before serving
        assert httpx.get(f"http://127.0.0.1:{port}/v1/cohorts").status_code == 401
        worker_pid = int(re.search(r"worker pid (\d+)", log).group(1))
        assert _alive(worker_pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    err.seek(0)
    log = err.read()
    assert code == 0, log
    assert "worker stopped" in log
    deadline = time.monotonic() + 10
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker_pid)
