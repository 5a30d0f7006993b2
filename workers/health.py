"""Is anyone working? Worker heartbeats in the data root, and a broker probe, for ``/v1/health``.

Why files: the embedded broker has no broadcast channel for Celery's ``ping``, and a worker
busy in a solo pool could not answer one anyway. Each worker writes
``<data root>/workers/<name>.json`` every few seconds from a thread (:class:`WorkerBeat`);
the API counts the files younger than the lease's stale age (``SYNTHCOHORT_LEASE_STALE_S``),
so a SIGKILLed worker drops out of the count as its jobs become claimable. The same thread
sweeps for stages whose holder died (:func:`workers.dispatch.requeue_stale_jobs`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from synthcohort.core import layout
from synthcohort.core.atomic import atomic_write_text
from synthcohort.workers.lease import heartbeat_s, stale_s, worker_name

log = logging.getLogger(__name__)

FORGET_S = 3600.0  # a heartbeat file this old is removed by whoever reads it


def _beat_path(name: str) -> Path:
    return layout.workers_dir() / (name.replace("/", "_").replace(":", "_") + ".json")


class WorkerBeat:
    """The worker's heartbeat file and stale-stage sweep, from a daemon thread."""

    def __init__(self, queues: list[str], sweep: bool = True, concurrency: int = 1):
        self.name = worker_name()
        self.path = _beat_path(self.name)
        self.info = {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                     "queues": queues, "concurrency": int(concurrency), "started_at": time.time()}
        self.sweep = sweep
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-beat", daemon=True)

    def start(self) -> WorkerBeat:
        self.beat()
        self._thread.start()
        return self

    def beat(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({**self.info, "beat_at": time.time()}))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        from synthcohort.workers.dispatch import requeue_stale_jobs

        last_sweep = 0.0
        while not self._stop.wait(heartbeat_s()):
            try:
                self.beat()
                if self.sweep and time.monotonic() - last_sweep >= stale_s() / 3:
                    last_sweep = time.monotonic()
                    requeue_stale_jobs()
            except Exception:  # a full disk or a DB hiccup must not kill the worker; the next beat retries
                log.exception("worker heartbeat failed")


def _live_beats() -> list[dict[str, Any]]:
    """The heartbeat files younger than the stale age, each with ``age_s``; very old ones are removed."""
    folder = layout.workers_dir()
    if not folder.is_dir():
        return []
    now, limit, alive = time.time(), stale_s(), []
    for path in folder.glob("*.json"):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            age = now - float(info["beat_at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if age < limit:
            alive.append({**info, "age_s": round(age, 1)})
        elif age > FORGET_S:
            path.unlink(missing_ok=True)
    return alive


def live_workers() -> list[dict[str, Any]]:
    """Workers whose heartbeat is younger than the stale age, each with ``age_s``."""
    alive = [{k: info.get(k) for k in ("name", "pid", "queues", "age_s")} for info in _live_beats()]
    return sorted(alive, key=lambda w: str(w["name"]))


def host_slots() -> int:
    """Task slots of the live workers on this host (each worker's ``--concurrency``), at least 1:
    the processes that share this machine's CPUs (:func:`synthcohort.core.threads.torch_threads`)."""
    host = socket.gethostname()
    slots = 0
    for info in _live_beats():
        if info.get("host") == host:
            try:
                slots += max(1, int(info.get("concurrency") or 1))
            except (TypeError, ValueError):
                slots += 1
    return max(1, slots)


def broker_reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether a connection to the Celery broker opens within ``timeout`` seconds."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure to connect is "not reachable"
        return False
