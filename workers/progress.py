"""Progress of a running job, written to its ``Job`` row for ``GET /v1/jobs/{id}``.

A training loop reports every few steps; writing each report would hammer SQLite, so
reports are throttled to one write per ``min_interval_s`` (the last report of a stage is
always written). A job of several stages (train → sample → validate) maps each stage onto
its share of the job's 0–100 %.
"""

from __future__ import annotations

import math
import time
from typing import Any

from synthcohort.core.progress import Progress
from synthcohort.workers.lease import JobLease

# Rough share of a cohort job's time per stage, for one overall percentage.
STAGE_WEIGHTS = {"import": 1.0, "train": 7.0, "sample": 1.0, "validate": 2.0}


def stage_spans(plan: list[str]) -> dict[str, tuple[float, float]]:
    """Percent range of each stage of ``plan`` within the whole job."""
    total = sum(STAGE_WEIGHTS[s] for s in plan)
    spans, lo = {}, 0.0
    for s in plan:
        hi = lo + 100.0 * STAGE_WEIGHTS[s] / total
        spans[s] = (lo, hi)
        lo = hi
    return spans


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON columns reject NaN/inf on PostgreSQL; keep what can be stored."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            continue
        out[k] = v
    return out


class JobProgress:
    """A :data:`synthcohort.progress.ProgressCallback` that writes to the job row, throttled."""

    def __init__(self, lease: JobLease, span: tuple[float, float] = (0.0, 100.0),
                 min_interval_s: float = 1.0, extra_metrics: dict[str, Any] | None = None):
        self.lease = lease
        self.lo, self.hi = span
        self.min_interval_s = min_interval_s
        self.extra = dict(extra_metrics or {})
        self._last_write: float | None = None  # the first report is always written
        self.writes = 0
        self.last: Progress | None = None

    def __call__(self, p: Progress) -> None:
        self.last = p
        now = time.monotonic()
        if (p.step < p.total and self._last_write is not None
                and now - self._last_write < self.min_interval_s):
            return
        self._last_write = now
        percent = self.lo + (self.hi - self.lo) * min(max(p.percent, 0.0), 100.0) / 100.0
        values: dict[str, Any] = {
            "percent": round(percent, 2),
            "eta_s": None if p.eta_s is None or not math.isfinite(p.eta_s) else float(p.eta_s),
            "metrics": _finite({**self.extra, **p.metrics, "step": p.step, "total": p.total}),
        }
        if not self.lease.write(values):
            self.lease.lost = True
        self.writes += 1
