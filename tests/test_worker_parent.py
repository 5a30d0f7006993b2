"""A worker spawned by the demo, `serve` or a test stops when its spawner dies without stopping it
(SIGKILL, a timeout): before this, an orphaned worker kept running at 100 % CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SPAWNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from synthcohort.workers.process import spawn_worker, wait_worker_ready
    log = Path(sys.argv[1])
    proc = spawn_worker("cpu", logfile=log)
    wait_worker_ready(proc, log)
    print(proc.pid, flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    """Running, not gone and not a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_a_worker_stops_when_its_spawner_is_killed(tmp_path):
    env = {**os.environ, "SYNTHCOHORT_HOME": str(tmp_path / "home"), "SYNTHCOHORT_DEVICE": "cpu",
           "OMP_NUM_THREADS": "1"}
    env.pop("SYNTHCOHORT_BROKER_URL", None)  # the embedded broker in the data root
    env.pop("SYNTHCOHORT_DATABASE_URL", None)
    log = tmp_path / "worker.log"
    spawner = subprocess.Popen([sys.executable, "-c", SPAWNER, str(log)], env=env, stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        worker = int(spawner.stdout.readline())
        assert _alive(worker)
        spawner.send_signal(signal.SIGKILL)
        spawner.wait(10)
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), f"the orphaned worker {worker} is still running; log:\n{log.read_text()[-2000:]}"
        assert "is gone: stopping" in log.read_text()
    finally:
        if spawner.poll() is None:
            spawner.kill()
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)
