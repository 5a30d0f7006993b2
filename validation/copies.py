"""Copy screening: does a synthetic sample reproduce a real training patient?

For each synthetic sample: its nearest training image in feature space (Euclidean) and in
pixel space (largest Pearson correlation, over small shifts and a mirror image, because that is
how a memorised patient comes back: ``benchmarks/copy_detection.py`` measures it). A sample is a near-copy when it is closer to a
training image than real hold-out images are to theirs (below the ``copy_quantile`` of the
hold-out→train nearest-neighbour distances, or above the 1 − q quantile of the correlations).

Authenticity (Alaa et al. 2022, "How Faithful is your Synthetic Data? Sample-level Metrics for
Evaluating and Auditing Generative Models", ICML): synthetic Y_j with nearest real X_{i*} is
unauthentic when d(Y_j, X_{i*}) < d(X_{i*}, its nearest other real) — the real-to-real distance
is indexed by the real neighbour i*, not by the synthetic sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from synthcohort.validation.neighbours import (
    DEFAULT_CHUNK_BYTES,
    knn,
    knn_radii,
    max_correlation,
)


@dataclass
class CopyScreen:
    nearest_index: np.ndarray  # (M,) index into train, feature space
    feature_distance: np.ndarray  # (M,)
    pixel_index: np.ndarray  # (M,) index into train, pixel space
    pixel_correlation: np.ndarray  # (M,)
    feature_threshold: float  # distances at or below are near-copies
    correlation_threshold: float  # correlations at or above are near-copies
    near_copy: np.ndarray  # (M,) bool
    authentic: np.ndarray  # (M,) bool (Alaa et al. 2022)

    @property
    def authenticity(self) -> float:
        return float(self.authentic.mean()) if len(self.authentic) else 1.0


def authenticity_mask(
    synthetic_feats: np.ndarray, train_feats: np.ndarray, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(authentic, nearest train index, distance) per synthetic sample."""
    d, i = knn(synthetic_feats, train_feats, 1, chunk_bytes=chunk_bytes)
    d, i = d[:, 0], i[:, 0]
    real_nn = knn_radii(train_feats, 1, chunk_bytes=chunk_bytes)  # d(X_i, nearest other real)
    return d >= real_nn[i], i, d


def tail_threshold(values: np.ndarray, q: float, *, upper: bool) -> float:
    """The value that real hold-out images pass with probability ``q``: hold-out → train nearest
    distances from below (``upper=False``), maximal correlations from above (``upper=True``).

    The stricter of two estimates: the empirical quantile, and a normal tail fitted on the scale
    where these statistics are close to normal (log distance; Fisher z = artanh r of a
    correlation). A hold-out of 32 volumes has no empirical 0.5 % quantile (its most extreme
    value stands for about 3 %); the fitted tail extrapolates to it.
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return -np.inf if upper else 0.0
    empirical = float(np.quantile(v, 1.0 - q if upper else q))
    if len(v) < 3:
        return empirical
    z = norm.ppf(1.0 - q)
    if upper:
        t = np.arctanh(np.clip(v, -1 + 1e-9, 1 - 1e-9))
        fitted = float(np.tanh(t.mean() + z * t.std(ddof=1)))
        return max(empirical, fitted)
    t = np.log(np.maximum(v, 1e-12))
    fitted = float(np.exp(t.mean() - z * t.std(ddof=1)))
    return min(empirical, fitted)


def screen_copies(
    synthetic_feats: np.ndarray,
    train_feats: np.ndarray,
    holdout_feats: np.ndarray,
    synthetic_pixels: np.ndarray,
    train_pixels: np.ndarray,
    holdout_pixels: np.ndarray,
    *,
    quantile: float = 0.01,
    max_shift: int = 0,
    flips: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> CopyScreen:
    """Nearest training neighbours of every synthetic sample and the near-copy decision.

    ``max_shift`` and ``flips`` align each image with each training image before correlating
    (``neighbours.max_correlation``); the hold-out calibration is aligned the same way. Each of
    the two tests runs at ``quantile / 2`` of the hold-out (``tail_threshold``), so a real image
    of another patient is flagged with probability at most ``quantile``."""
    authentic, idx, dist = authenticity_mask(synthetic_feats, train_feats, chunk_bytes=chunk_bytes)
    h_d, _ = knn(holdout_feats, train_feats, 1, chunk_bytes=chunk_bytes)
    per_test = quantile / 2.0  # two tests, one flag: Bonferroni keeps real images flagged at ≤ quantile
    feat_thr = tail_threshold(h_d[:, 0], per_test, upper=False)
    align = {"max_shift": max_shift, "flips": flips, "chunk_bytes": chunk_bytes}
    corr, pidx = max_correlation(synthetic_pixels, train_pixels, **align)
    h_corr, _ = max_correlation(holdout_pixels, train_pixels, **align)
    corr_thr = tail_threshold(h_corr, per_test, upper=True)
    near = (dist <= feat_thr) | (corr >= corr_thr)
    return CopyScreen(idx, dist, pidx, corr, feat_thr, corr_thr, near, authentic)
