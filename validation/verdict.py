"""The verdict and the report object every consumer (worker, API, CLI) reads.

``failed`` when any gate metric fails; ``needs_review`` when the gates pass but samples are
flagged (they are held back until a reviewer decides); ``passed`` otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PASSED, FAILED, NEEDS_REVIEW = "passed", "failed", "needs_review"


@dataclass
class Metric:
    value: float
    ci: tuple[float, float] | None = None
    threshold: float | None = None
    passed: bool | None = None  # None: informational, not a gate
    label: str = ""  # human description for report.html

    def to_json(self) -> dict[str, Any]:
        return {
            "value": _num(self.value),
            "ci": [_num(self.ci[0]), _num(self.ci[1])] if self.ci is not None else None,
            "threshold": _num(self.threshold) if self.threshold is not None else None,
            "passed": self.passed,
            "label": self.label,
        }


def gate(value: float, threshold: float, *, ci: tuple[float, float] | None = None, label: str = "") -> Metric:
    """A metric that must reach ``threshold`` (≥)."""
    return Metric(float(value), ci, float(threshold), bool(value >= threshold), label)


def info(value: float, *, ci: tuple[float, float] | None = None, label: str = "") -> Metric:
    return Metric(float(value), ci, None, None, label)


def _num(x: float | None) -> float | None:
    """JSON has no NaN/inf: they become null."""
    if x is None:
        return None
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


@dataclass
class ValidationReport:
    verdict: str
    reasons: list[str]
    metrics: dict[str, Metric]
    samples: list[dict[str, Any]]
    extractors: list[dict[str, str]]
    provenance: dict[str, Any]
    warnings: list[str]
    details: dict[str, Any] = field(default_factory=dict)  # bins counts, utility table, picture files
    out_dir: str | None = None

    @property
    def flagged(self) -> list[int]:
        """Indices of samples held back until a reviewer decides."""
        return [s["index"] for s in self.samples if s["flags"]]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "metrics": {k: m.to_json() for k, m in self.metrics.items()},
            "samples": self.samples,
            "extractors": self.extractors,
            "provenance": self.provenance,
            "warnings": list(self.warnings),
            "held_back": self.flagged,
            "details": self.details,
        }

    def dumps(self) -> str:
        return json.dumps(_clean(self.to_json()), indent=2, sort_keys=False, allow_nan=False, default=_default)


def _clean(o: Any) -> Any:
    """NaN/inf anywhere (a utility metric without minority test images, say) → null."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float):
        return _num(o)
    return o


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def decide(metrics: dict[str, Metric], samples: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """Verdict and the reasons for it."""
    failing = [
        f"{name} = {m.value:.4g} is below the threshold {m.threshold:.4g}"
        for name, m in metrics.items() if m.passed is False
    ]
    if failing:
        return FAILED, failing
    flagged = [s for s in samples if s["flags"]]
    gates = [n for n, m in metrics.items() if m.passed]
    if flagged:
        kinds: dict[str, int] = {}
        for s in flagged:
            for f in {f["kind"] for f in s["flags"]}:
                kinds[f] = kinds.get(f, 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        return NEEDS_REVIEW, [
            f"all gates passed ({', '.join(gates)})",
            f"{len(flagged)} of {len(samples)} samples flagged ({detail}); held back until a reviewer decides",
        ]
    return PASSED, [f"all gates passed ({', '.join(gates)})", "no sample flagged"]
