"""Progress of long work: one record type, shown as a tqdm bar on the CLI and stored for the API."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm import tqdm


@dataclass
class Progress:
    stage: str  # "train", "sample", "validate", "import"
    step: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)  # losses, ADA p, images/s...
    eta_s: float | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.step / self.total if self.total else 100.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "percent": self.percent}


ProgressCallback = Callable[[Progress], None]


class EtaClock:
    """Estimates the remaining time from the rate since the first reported step."""

    def __init__(self, total: int, start_step: int = 0):
        self.total = total
        self.start_step = start_step
        self.t0 = time.perf_counter()

    def rate(self, step: int) -> float:
        dt = time.perf_counter() - self.t0
        return (step - self.start_step) / dt if dt > 0 else 0.0

    def eta(self, step: int) -> float | None:
        r = self.rate(step)
        return (self.total - step) / r if r > 0 else None


class TqdmProgress:
    """A ProgressCallback drawing a progress bar (stderr) for the CLI."""

    def __init__(self, desc: str = ""):
        self.desc = desc
        self._bar = None

    def __call__(self, p: Progress) -> None:
        if self._bar is None:
            self._bar = tqdm(total=p.total, desc=self.desc or p.stage, unit="step", dynamic_ncols=True)
        self._bar.n = p.step
        if p.metrics:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in list(p.metrics.items())[:5]}, refresh=False)
        self._bar.refresh()
        if p.step >= p.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
