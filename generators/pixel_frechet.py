"""A cheap Fréchet distance on down-sampled pixels, for training checks and benchmarks.

The Fréchet (2-Wasserstein) distance between Gaussians fitted to two feature sets,
``‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})`` (Dowson & Landau 1982; used as FID by
Heusel et al. 2017 on Inception features). Here the features are the images average-pooled
to ``size`` per side: no network weights, fast, and sensitive to intensity, contrast and
coarse layout, which is what a short training run changes first. It is not the validation
stage's FID; it is for "did training help" checks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg


def pooled_pixels(images: np.ndarray, size: int = 8) -> np.ndarray:
    """(N, C, *spatial) in [0, 1] → (N, C · size^d) float64 features."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    pool = F.adaptive_avg_pool2d if x.dim() == 4 else F.adaptive_avg_pool3d
    return pool(x, size).flatten(1).double().numpy()


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, F) feature sets."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
        eye = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eye) @ (s2 + eye))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def pixel_frechet_distance(real: np.ndarray, fake: np.ndarray, size: int = 8) -> float:
    """Fréchet distance between real and generated images on ``size``-pooled pixels."""
    return frechet_distance(pooled_pixels(real, size), pooled_pixels(fake, size))
