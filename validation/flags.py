"""Per-sample flags: near_copy, outlier, broken — each with a reason and a score.

A flagged sample is held back from release until a reviewer decides (the verdict becomes
``needs_review`` when the gates pass but samples are flagged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from synthcohort.validation.copies import CopyScreen
from synthcohort.validation.neighbours import DEFAULT_CHUNK_BYTES, knn, knn_radii


@dataclass
class Flag:
    kind: str  # "near_copy" | "outlier" | "broken"
    reason: str
    score: float

    def to_json(self) -> dict:
        return asdict(self)


def roughness(images: np.ndarray) -> np.ndarray:
    """Per image: mean squared difference of neighbouring pixels along the last two axes over
    twice the image's variance, i.e. 1 − the lag-1 autocorrelation. About 0.0–0.2 for
    anatomy, 1 for white noise; NaN for a constant image. Features of a class-trained encoder
    barely see noise, so this pixel check catches noisy samples the feature scores let pass."""
    x = np.asarray(images, dtype=np.float64)
    x = x.reshape(len(x), -1, *x.shape[-2:])
    d2 = (np.diff(x, axis=-1) ** 2).mean((1, 2, 3)) + (np.diff(x, axis=-2) ** 2).mean((1, 2, 3))
    var = x.reshape(len(x), -1).var(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 1e-12, d2 / (4.0 * var), np.nan)


def broken_flags(images: np.ndarray, real_images: np.ndarray, saturated_fraction: float = 0.95) -> list[list[Flag]]:
    """NaN/inf, constant, out of [0, 1], saturated beyond both the threshold and any real image,
    or rougher (noisier) than any real image."""
    flat = images.reshape(len(images), -1)
    real_flat = real_images.reshape(len(real_images), -1)
    real_sat = float(((real_flat <= 0.0) | (real_flat >= 1.0)).mean(1).max()) if len(real_flat) else 0.0
    sat_limit = max(saturated_fraction, real_sat)
    real_rough = roughness(real_images)
    rough_limit = float(np.nanmax(real_rough)) if np.isfinite(real_rough).any() else np.inf
    rough = roughness(np.nan_to_num(images))
    out: list[list[Flag]] = []
    for i, x in enumerate(flat):
        flags: list[Flag] = []
        finite = np.isfinite(x)
        if not finite.all():
            flags.append(Flag("broken", f"{int((~finite).sum())} non-finite pixel values (NaN/inf)", float((~finite).mean())))
        else:
            std = float(x.std())
            if std < 1e-6:
                flags.append(Flag("broken", f"constant image (value {float(x.mean()):.3g})", std))
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-3 or hi > 1.0 + 1e-3:
                flags.append(Flag("broken", f"values outside [0, 1] (min {lo:.3g}, max {hi:.3g})", max(-lo, hi - 1.0)))
            sat = float(((x <= 0.0) | (x >= 1.0)).mean())
            if sat > sat_limit and std >= 1e-6:
                flags.append(Flag("broken", f"{100 * sat:.1f}% of pixels saturated at 0 or 1 (real images at most {100 * real_sat:.1f}%)", sat))
            if rough[i] > rough_limit:
                flags.append(Flag("broken", f"noisy: roughness {rough[i]:.3f} above any real image's ({rough_limit:.3f})", float(rough[i])))
        out.append(flags)
    return out


def outlier_flags(
    synthetic_feats: np.ndarray,
    real_feats: np.ndarray,
    *,
    k: int = 5,
    quantile: float = 1.0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[list[list[Flag]], float]:
    """Outside the real manifold: the nearest real sample is farther than the ``quantile`` of the
    real k-NN radii (1.0 = farther than any real image's k-th neighbour). Score = distance / radius."""
    k = min(k, len(real_feats) - 1)
    radius = float(np.quantile(knn_radii(real_feats, k, chunk_bytes=chunk_bytes), quantile))
    d, _ = knn(synthetic_feats, real_feats, 1, chunk_bytes=chunk_bytes)
    out = []
    for di in d[:, 0]:
        if di > radius:
            out.append([Flag("outlier", f"nearest real image at feature distance {di:.3g}, beyond the real {k}-NN radius {radius:.3g}", float(di / max(radius, 1e-12)))])
        else:
            out.append([])
    return out, radius


def copy_flags(screen: CopyScreen) -> list[list[Flag]]:
    out = []
    for j in range(len(screen.near_copy)):
        if not screen.near_copy[j]:
            out.append([])
            continue
        parts = []
        if screen.feature_distance[j] <= screen.feature_threshold:
            parts.append(f"feature distance {screen.feature_distance[j]:.3g} to a training image ≤ hold-out threshold {screen.feature_threshold:.3g}")
        if screen.pixel_correlation[j] >= screen.correlation_threshold:
            parts.append(f"pixel correlation {screen.pixel_correlation[j]:.4f} with a training image ≥ hold-out threshold {screen.correlation_threshold:.4f}")
        out.append([Flag("near_copy", "; ".join(parts), float(screen.pixel_correlation[j]))])
    return out


def merge_flags(*lists: list[list[Flag]]) -> list[list[Flag]]:
    return [sum(group, []) for group in zip(*lists)]
