"""Keep one worker process alive for ``synthcohort serve``: restart it when it dies, with back-off.

Why: a worker killed by the OOM killer or ``kill -9`` left ``serve`` answering requests whose jobs
nobody ran. The supervisor polls its child; when it has exited (and we are not stopping) it
starts a new one after :data:`BACKOFF_S` (doubling to :data:`BACKOFF_MAX_S` while the worker
keeps dying within :data:`STABLE_S` of its start). The new worker re-sends the jobs the dead one
left running, and takes their stages over once the dead worker's lease is stale.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from synthcohort.workers.process import spawn_worker, stop_worker

log = logging.getLogger(__name__)

BACKOFF_S = 1.0
BACKOFF_MAX_S = 60.0
STABLE_S = 60.0  # a worker that ran this long resets the back-off
POLL_S = 0.5


class WorkerSupervisor:
    """A worker child restarted on exit; :meth:`stop` ends it (and the restarts)."""

    def __init__(self, queues: str = "gpu,cpu", logfile: Path | None = None, env: dict | None = None,
                 on_start: Callable[[subprocess.Popen, int], None] | None = None, backoff_s: float = BACKOFF_S):
        self.queues, self.logfile, self.env = queues, logfile, env
        self.on_start = on_start  # called with (process, restarts so far), e.g. to print the pid
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._started_at = 0.0
        self.backoff_s = backoff_s  # the first delay; doubles up to BACKOFF_MAX_S
        self._backoff = backoff_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> WorkerSupervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self.proc = spawn_worker(queues=self.queues, env=self.env, logfile=self.logfile)
            self._started_at = time.monotonic()
        if self.on_start is not None:
            self.on_start(self.proc, self.restarts)

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_S):
            proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            ran = time.monotonic() - self._started_at
            if ran >= STABLE_S:
                self._backoff = self.backoff_s
            delay, self._backoff = self._backoff, min(self._backoff * 2, BACKOFF_MAX_S)
            log.warning("worker pid %d exited with %s after %.0f s; restarting in %.0f s",
                        proc.pid, proc.returncode, ran, delay)
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            self._spawn()

    def stop(self, timeout: float = 20.0) -> int | None:
        """No more restarts; warm shutdown of the current worker. Its exit status (None if none ran)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            proc = self.proc
        return None if proc is None else stop_worker(proc, timeout)
