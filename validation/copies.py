"""Copy screening: does a synthetic sample reproduce a real training patient?

For each synthetic sample: its nearest training image in feature space (Euclidean) and in
pixel space (largest Pearson correlation). A sample is a near-copy when it is closer to a
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


def screen_copies(
    synthetic_feats: np.ndarray,
    train_feats: np.ndarray,
    holdout_feats: np.ndarray,
    synthetic_pixels: np.ndarray,
    train_pixels: np.ndarray,
    holdout_pixels: np.ndarray,
    *,
    quantile: float = 0.01,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> CopyScreen:
    """Nearest training neighbours of every synthetic sample and the near-copy decision."""
    authentic, idx, dist = authenticity_mask(synthetic_feats, train_feats, chunk_bytes=chunk_bytes)
    h_d, _ = knn(holdout_feats, train_feats, 1, chunk_bytes=chunk_bytes)
    feat_thr = float(np.quantile(h_d[:, 0], quantile))
    corr, pidx = max_correlation(synthetic_pixels, train_pixels, chunk_bytes=chunk_bytes)
    h_corr, _ = max_correlation(holdout_pixels, train_pixels, chunk_bytes=chunk_bytes)
    corr_thr = float(np.quantile(h_corr, 1.0 - quantile))
    near = (dist <= feat_thr) | (corr >= corr_thr)
    return CopyScreen(idx, dist, pidx, corr, feat_thr, corr_thr, near, authentic)
