"""The service's processes for ``serve``, the demo and tests: a worker as a child process
(:func:`spawn_worker`, :func:`stop_worker`), and the API in a thread (:class:`ApiThread`).

The worker is ``python -m synthcohort worker`` (DB upgrade, orphan recovery, then Celery).
With ``concurrency == 1`` it uses Celery's *solo* pool: the task runs in the worker process
itself, so torch sees one plain process, and killing that one pid (tests SIGKILL it) really
kills the task — no orphaned pool child keeps training. More than one slot uses *prefork*.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvicorn

from synthcohort.workers.parent import PARENT_PID_ENV

REPO = Path(__file__).resolve().parents[1]


def worker_command(queues: str = "gpu,cpu", concurrency: int = 1, loglevel: str = "info") -> list[str]:
    return [sys.executable, "-m", "synthcohort", "worker", "--queues", queues,
            "--concurrency", str(concurrency), "--loglevel", loglevel]


def spawn_worker(queues: str = "gpu,cpu", concurrency: int = 1, env: dict | None = None,
                 logfile: Path | None = None) -> subprocess.Popen:
    """Start a worker consuming ``queues``; its output goes to ``logfile`` (or is discarded).

    ``env`` replaces the child's environment when given (pass ``{**os.environ, ...}`` to extend);
    the child runs in its own session so a terminal's Ctrl-C reaches only the parent, which
    stops it with :func:`stop_worker`; if the parent dies first, the child stops itself
    (``workers.parent``).
    """
    child_env = dict(os.environ if env is None else env)
    child_env[PARENT_PID_ENV] = str(os.getpid())
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), child_env.get("PYTHONPATH")]))
    out = subprocess.DEVNULL
    if logfile is not None:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        out = open(logfile, "ab")  # noqa: SIM115 - the child owns it; closed with the Popen
    try:
        return subprocess.Popen(
            worker_command(queues, concurrency), env=child_env, cwd=str(REPO),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    finally:
        if out is not subprocess.DEVNULL:
            out.close()


def stop_worker(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """Warm shutdown (SIGTERM: the current task's message goes back to the queue), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    return proc.returncode


class ApiThread:
    """The REST API served by uvicorn on a free local port in a background thread.

    For the demo and the tests, which run the API beside their own code; ``synthcohort serve``
    is the production entry point."""

    def __init__(self, app: object, host: str = "127.0.0.1", port: int = 0):
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.port = port
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self, timeout: float = 30.0) -> ApiThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def wait_worker_ready(proc: subprocess.Popen, logfile: Path, timeout: float = 120.0) -> None:
    """Block until the worker logs Celery's "ready" line (it consumes its queues)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = logfile.read_text(errors="replace") if logfile.exists() else ""
        if " ready." in text:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with status {proc.returncode}; its log {logfile}:\n{text[-3000:]}")
        time.sleep(0.25)
    raise RuntimeError(f"the worker was not ready after {timeout:.0f} s; see {logfile}")
