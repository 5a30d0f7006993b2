"""``/v1/health``: the schema revision, the broker and the workers, probed at most every
:data:`PROBE_S` seconds so that a load balancer polling it costs a dictionary lookup."""

from __future__ import annotations

import threading
import time
from typing import Any

from synthcohort.core.settings import get_settings
from synthcohort.store.migrate import current_revision
from synthcohort.workers.health import broker_reachable, live_workers

PROBE_S = 2.0


class HealthProbe:
    """One cached answer per app; refreshed by the first request after it is :data:`PROBE_S` old."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._answer: dict[str, Any] = {}

    def answer(self) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._at >= PROBE_S:
                self._answer = self._probe()
                self._at = time.monotonic()
            return self._answer

    def _probe(self) -> dict[str, Any]:
        broker = broker_reachable(get_settings().celery_broker_url())
        workers = live_workers()
        return {"status": "ok" if broker and workers else "degraded",
                "database_revision": current_revision(self.database_url),
                "broker_reachable": broker, "workers": workers}
