"""Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel.

Bińkowski et al. 2018, "Demystifying MMD GANs" (ICLR): k(x, y) = (xᵀy / d + 1)³ and
MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j) − 2/(mn) Σ_{i,j} k(x_i, y_j),
averaged over random subsets of size m (seeded). Unlike FD it is unbiased, so it stays meaningful
at the small N of rare classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthcohort.core.seeding import numpy_rng


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> np.ndarray:
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """MMD²_u between feature sets x (m, d) and y (n, d) with the KID kernel."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        - 2.0 * k_xy.mean()
    )


@dataclass
class KidResult:
    value: float
    ci: tuple[float, float]
    subset_size: int


def kid(x: np.ndarray, y: np.ndarray, *, seed: int, subsets: int = 50, subset_size: int = 1000) -> KidResult:
    """KID of x vs y: mean MMD²_u over ``subsets`` random subsets of size min(subset_size, |x|, |y|);
    the CI is the 2.5–97.5 percentile range of the subset estimates (seeded)."""
    rng = numpy_rng(seed)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    vals = np.array([
        mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
        for _ in range(subsets)
    ])
    return KidResult(float(vals.mean()), (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))), m)
