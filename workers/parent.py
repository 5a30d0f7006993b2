"""A spawned worker ends with the process that spawned it.

``spawn_worker`` starts the worker in its own session (so a terminal's Ctrl-C reaches only the
parent, which stops it cleanly). The cost: if the parent dies without stopping it (SIGKILL, a
test's timeout, an OOM kill), nothing signals the worker, and it keeps taking jobs and CPU. So the
parent writes its pid into the child's environment, and the worker polls its own parent pid: once
that changes (the orphan was re-parented), it stops as ``stop_worker`` would — SIGTERM (warm
shutdown: the current task's message goes back to the queue), then exit after a grace period.
A worker started by hand (no such variable) is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)

PARENT_PID_ENV = "SYNTHCOHORT_PARENT_PID"
POLL_S = 1.0
GRACE_S = 20.0  # as stop_worker's: then the worker exits without waiting for its task


def watch_parent(poll_s: float = POLL_S, grace_s: float = GRACE_S) -> threading.Thread | None:
    """Start the watch when this process was spawned with ``PARENT_PID_ENV``; the variable is
    removed so that processes this one starts do not inherit it."""
    raw = os.environ.pop(PARENT_PID_ENV, None)
    if not raw:
        return None
    parent = int(raw)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        log.warning("the process that spawned this worker (pid %d) is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
