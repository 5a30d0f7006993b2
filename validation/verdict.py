"""The verdict and the report object every consumer (worker, API, CLI) reads.

``failed`` when a gate fails decisively; ``needs_review`` when a gate is not decisive (its 95 %
CI contains the threshold, so the data cannot tell; every sample is then held for a reviewer)
or when the gates pass but samples are flagged (those are held); ``passed`` otherwise.

Two decision rules (``ValidationConfig.decision``):

- ``point`` (the default): a gate passes when its value reaches the threshold. One whose value
  falls short while its CI still reaches the threshold is *not decisive*, and the cohort goes to
  a reviewer instead of failing: at minority sizes (N = 20–200) the CI of S_FID is often that
  wide, and real-vs-real splits of that size fall on either side of 0.90.
- ``lower_bound``: a gate passes only when the lower end of its CI reaches the threshold; any
  other outcome fails. For deployments that want the standard met with 95 % confidence.

A gate without a CI (coverage, entropy ratio) is judged on its value under both rules.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

PASSED, FAILED, NEEDS_REVIEW = "passed", "failed", "needs_review"
DecisionRule = Literal["point", "lower_bound"]
Outcome = Literal["pass", "fail", "undecided"]
NOT_DECISIVE = "gate_not_decisive"  # the flag every sample gets when a gate could not decide


@dataclass
class Metric:
    value: float
    ci: tuple[float, float] | None = None
    threshold: float | None = None
    passed: bool | None = None  # the value against the threshold; None: informational, not a gate
    label: str = ""  # human description for report.html
    n: int | None = None  # the sample size the CI was computed at

    @property
    def decisive(self) -> bool | None:
        """Whether the CI lies wholly on one side of the threshold; None without a gate or a CI."""
        if self.passed is None or self.ci is None or self.threshold is None:
            return None
        lo, hi = self.ci
        return bool(lo >= self.threshold or hi < self.threshold)

    @property
    def n_to_decide(self) -> int | None:
        """Roughly the N at which the CI would no longer contain the threshold, if its half-width
        shrinks as 1/√N around the same value; None when decisive, or when N or the gap is 0."""
        if self.decisive is not False or not self.n:
            return None
        half, gap = (self.ci[1] - self.ci[0]) / 2.0, abs(self.value - self.threshold)  # type: ignore[index,operator]
        if not math.isfinite(half) or gap < 1e-9:
            return None
        return max(int(self.n) + 1, math.ceil(self.n * (half / gap) ** 2))

    def outcome(self, rule: DecisionRule = "point") -> Outcome | None:
        """pass / fail / undecided under ``rule`` (module docstring); None for an informational metric."""
        if self.passed is None:
            return None
        if self.decisive is None or self.decisive:
            if rule == "lower_bound" and self.ci is not None:
                return "pass" if self.ci[0] >= self.threshold else "fail"  # type: ignore[operator]
            return "pass" if self.passed else "fail"
        if rule == "lower_bound":
            return "fail"
        return "pass" if self.passed else "undecided"

    def to_json(self) -> dict[str, Any]:
        return {
            "value": _num(self.value),
            "ci": [_num(self.ci[0]), _num(self.ci[1])] if self.ci is not None else None,
            "threshold": _num(self.threshold) if self.threshold is not None else None,
            "passed": self.passed,
            "decisive": self.decisive,
            "n": self.n,
            "n_to_decide": self.n_to_decide,
            "label": self.label,
        }


def gate(value: float, threshold: float, *, ci: tuple[float, float] | None = None, label: str = "",
         n: int | None = None) -> Metric:
    """A metric that must reach ``threshold`` (≥)."""
    return Metric(float(value), ci, float(threshold), bool(value >= threshold), label, n)


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


def metric_lines(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """One line per gate, then the standard FID, from the JSON form of the metrics (a report's
    or an API cohort's): what the CLI and the demo print under the verdict."""
    lines = []
    for name, m in metrics.items():
        if m.get("passed") is None or m.get("value") is None:
            continue
        ci = f" [{m['ci'][0]:.3g}, {m['ci'][1]:.3g}]" if m.get("ci") and None not in m["ci"] else ""
        state = "pass" if m["passed"] else "below"
        if m.get("decisive") is False:
            state += f", not decisive at N = {m.get('n')}"
        lines.append(f"{name} {m['value']:.3g}{ci} (threshold {m['threshold']:.3g}: {state})")
    fid, rel = metrics.get("fid_inception"), metrics.get("s_fid_inception")
    if fid and fid.get("value") is not None and rel and rel.get("value") is not None:
        lines.append(f"Inception FID {fid['value']:.4g}, relative {rel['value']:.3g} (informational)")
    return lines


@dataclass
class Decision:
    verdict: str
    reasons: list[str]
    undecided: dict[str, str]  # gate name → why it could not decide

    def hold_every_sample(self, samples: list[dict[str, Any]]) -> None:
        """A gate that could not decide leaves the cohort to a reviewer: every sample is held,
        with the reason, and can be approved or rejected like any flagged one."""
        for s in samples:
            for name, why in self.undecided.items():
                s["flags"].append({"kind": NOT_DECISIVE, "reason": why, "score": None, "gate": name})


def _ci_text(m: Metric) -> str:
    return f"95 % CI [{m.ci[0]:.3g}, {m.ci[1]:.3g}]" if m.ci is not None else "no CI"


def decide(metrics: dict[str, Metric], samples: list[dict[str, Any]], rule: DecisionRule = "point") -> Decision:
    """The verdict, the reasons for it in plain words (with what to do next), and the gates that
    could not decide."""
    outcomes = {name: m.outcome(rule) for name, m in metrics.items() if m.passed is not None}
    failing = []
    for name, m in metrics.items():
        if outcomes.get(name) != "fail":
            continue
        if m.passed:  # lower_bound rule, value above the threshold
            failing.append(f"{name}: the lower end of its {_ci_text(m)} is below the threshold {m.threshold:.3g} "
                           f"(decision rule lower_bound; value {m.value:.3g})")
        else:
            failing.append(f"{name} = {m.value:.4g} is below the threshold {m.threshold:.4g}"
                           + (f" ({_ci_text(m)}, decisive)" if m.ci is not None else ""))
    if failing:
        return Decision(FAILED, failing + ["nothing of this cohort can be released; train longer, or change the "
                                           "generator or its configuration, and request a new cohort"], {})
    gates = [n for n, o in outcomes.items() if o == "pass"]
    notes = [f"{name} passes at its value {m.value:.3g}, but its {_ci_text(m)} contains the threshold "
             f"{m.threshold:.3g}: not decisive at N = {m.n}" + (f" (about N ≈ {m.n_to_decide} would decide it)"
                                                                 if m.n_to_decide else "")
             for name, m in metrics.items() if outcomes.get(name) == "pass" and m.decisive is False]
    undecided = {
        name: (f"{name} = {m.value:.3g} is below the threshold {m.threshold:.3g}, but its {_ci_text(m)} contains "
               f"it: not decisive at N = {m.n}" + (f"; about N ≈ {m.n_to_decide} would decide it" if m.n_to_decide
                                                   else ""))
        for name, m in metrics.items() if outcomes.get(name) == "undecided"
    }
    if undecided:
        passed_text = [f"gates passed: {', '.join(gates)}"] if gates else []
        return Decision(NEEDS_REVIEW, list(undecided.values()) + passed_text + notes + [
            f"every sample ({len(samples)}) is held until a reviewer decides; N is the smaller of the cohort and "
            "the real reference sample of the class, so more real images of the class (or, when the cohort is the "
            "smaller, a larger cohort) would let the gate decide by itself"], undecided)
    flagged = [s for s in samples if s["flags"]]
    if flagged:
        kinds: dict[str, int] = {}
        for s in flagged:
            for f in {f["kind"] for f in s["flags"]}:
                kinds[f] = kinds.get(f, 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        return Decision(NEEDS_REVIEW, [f"all gates passed ({', '.join(gates)})"] + notes + [
            f"{len(flagged)} of {len(samples)} samples flagged ({detail}); held back until a reviewer decides"], {})
    return Decision(PASSED, [f"all gates passed ({', '.join(gates)})"] + notes + ["no sample flagged"], {})
