"""Mode-collapse statistics: precision/recall/density/coverage, k-means bins entropy, t-SNE.

- Precision and recall, k = 3: Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
  for Assessing Generative Models" (NeurIPS).
- Density and coverage, k = 5: Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
  Generative Models" (ICML). With real X_i (N), fake Y_j (M) and NND_k(X_i) the distance of X_i
  to its k-th nearest real neighbour:
  precision = 1/M Σ_j 1[∃i: Y_j ∈ B(X_i, NND_k(X_i))],  recall = 1/N Σ_i 1[∃j: X_i ∈ B(Y_j, NND_k(Y_j))],
  density = 1/(kM) Σ_j Σ_i 1[Y_j ∈ B(X_i, NND_k(X_i))],  coverage = 1/N Σ_i 1[∃j: Y_j ∈ B(X_i, NND_k(X_i))].
- Bins: Richardson & Weiss 2018, "On GANs and GMMs" (NeurIPS): k-means cells on real features,
  two-proportion z-test per cell, here with a Bonferroni correction over the K cells.
- Voxel spread (3D): the standard deviation over samples at every voxel, real beside synthetic,
  in three orthogonal slices. A collapsed cohort repeats one volume, so its spread map goes dark
  where the real one is bright (the picture counterpart of the t-SNE for volumes).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from synthcohort.core.atomic import atomic_path
from synthcohort.core.seeding import numpy_rng
from synthcohort.validation.neighbours import (
    DEFAULT_CHUNK_BYTES,
    ball_counts,
    knn,
    knn_radii,
)
from synthcohort.validation.volume_views import AXES, slice_centre


@dataclass
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float


def prdc(
    real: np.ndarray, fake: np.ndarray, *, pr_k: int = 3, dc_k: int = 5, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> PRDC:
    """The four metrics of the module docstring, chunked (no N×M matrix)."""
    r_pr = knn_radii(real, pr_k, chunk_bytes=chunk_bytes)
    f_pr = knn_radii(fake, pr_k, chunk_bytes=chunk_bytes)
    r_dc = r_pr if dc_k == pr_k else knn_radii(real, dc_k, chunk_bytes=chunk_bytes)
    precision = float((ball_counts(fake, real, r_pr, chunk_bytes=chunk_bytes) > 0).mean())
    recall = float((ball_counts(real, fake, f_pr, chunk_bytes=chunk_bytes) > 0).mean())
    density = float(ball_counts(fake, real, r_dc, chunk_bytes=chunk_bytes).sum() / (dc_k * len(fake)))
    nearest_fake, _ = knn(real, fake, 1, chunk_bytes=chunk_bytes)
    coverage = float((nearest_fake[:, 0] < r_dc).mean())
    return PRDC(precision, recall, density, coverage)


@dataclass
class BinsResult:
    k: int
    entropy_real: float  # H / log K of the real occupancy
    entropy_synthetic: float
    entropy_ratio: float
    different_bins: int  # cells whose proportions differ (Bonferroni-corrected two-proportion z-test)
    alpha: float
    correction: str
    real_counts: list[int]
    synthetic_counts: list[int]


def normalised_entropy(counts: np.ndarray) -> float:
    """H(p) / log K of a histogram over K cells (1 = uniform, 0 = all in one cell)."""
    k = len(counts)
    p = counts / max(counts.sum(), 1)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 0.0


def bins_test(real: np.ndarray, fake: np.ndarray, *, seed: int, max_bins: int = 20, alpha: float = 0.05,
              cells_from: np.ndarray | None = None) -> BinsResult:
    """k-means (seeded) with K = min(max_bins, N // 10) (≥ 2) on real features; compare occupancies.

    The cells are fitted on ``cells_from`` (default: ``real``) and the occupancies of ``real`` and
    ``fake`` are counted in them: the pipeline fits on every train image of the class (K stays as
    large as before) and counts the reference sample, which the encoder did not see, like ``fake``.
    """

    fit = real if cells_from is None else cells_from
    k = int(max(2, min(max_bins, len(fit) // 10)))
    with threadpool_limits(1):  # see tsne_plot: OpenMP spin-waits on a shared machine
        km = KMeans(n_clusters=k, n_init=4, random_state=seed % (2**31)).fit(fit)
        rc = np.bincount(km.labels_ if cells_from is None else km.predict(real), minlength=k)
        fc = np.bincount(km.predict(fake), minlength=k)
    n1, n2 = rc.sum(), fc.sum()
    p1, p2 = rc / n1, fc / n2
    pooled = (rc + fc) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p1 - p2) / se, 0.0)
    pvals = 2 * stats.norm.sf(np.abs(z))
    different = int((pvals < alpha / k).sum())
    h_r, h_f = normalised_entropy(rc), normalised_entropy(fc)
    return BinsResult(
        k, h_r, h_f, h_f / h_r if h_r > 0 else 0.0, different, alpha, f"Bonferroni (α/K = {alpha / k:.4g})",
        rc.tolist(), fc.tolist(),
    )


def tsne_plot(real: np.ndarray, fake: np.ndarray, path: Path, *, seed: int, max_points: int = 1000, title: str = "") -> Path:
    """t-SNE (seeded) of real vs synthetic features, saved atomically as PNG."""

    matplotlib.use("Agg")

    rng = numpy_rng(seed)
    r = real[rng.choice(len(real), min(len(real), max_points), replace=False)]
    f = fake[rng.choice(len(fake), min(len(fake), max_points), replace=False)]
    x = np.concatenate([r, f])
    perplexity = float(max(2.0, min(30.0, (len(x) - 1) / 3.0)))

    # one thread: a few thousand points gain nothing from OpenMP, and on a busy machine its
    # spin-waiting threads slow the embedding down by an order of magnitude
    with threadpool_limits(1):
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed % (2**31)).fit_transform(x)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(emb[: len(r), 0], emb[: len(r), 1], s=8, alpha=0.6, label=f"real ({len(r)})", c="#1f77b4")
    ax.scatter(emb[len(r):, 0], emb[len(r):, 1], s=8, alpha=0.6, label=f"synthetic ({len(f)})", c="#d62728")
    ax.legend(loc="best")
    ax.set_title(title or "t-SNE of encoder features")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def spread_picture(real: np.ndarray, fake: np.ndarray) -> bytes:
    """PNG of the voxel spread (module docstring) of real and synthetic volumes (N, C, D, H, W):
    the per-voxel standard deviation over samples in three orthogonal slices through the middle,
    both rows on one colour scale, each titled with its mean spread."""
    matplotlib.use("Agg")
    maps = [np.nan_to_num(np.asarray(v, np.float32))[:, 0].std(0) for v in (real, fake)]
    top = float(max(m.max() for m in maps)) or 1.0
    at = slice_centre(maps[0].shape, None)
    fig, axes = plt.subplots(2, 3, figsize=(6.6, 4.6), dpi=100, squeeze=False)
    for r, (name, sd, n) in enumerate(zip(("real", "synthetic"), maps, (len(real), len(fake)))):
        d, h, w = at
        for c, plane in enumerate((sd[d], sd[:, h], sd[:, :, w])):
            ax = axes[r, c]
            im = ax.imshow(plane, cmap="magma", vmin=0.0, vmax=top, interpolation="nearest")
            ax.set_title(f"{name} (N = {n}), {AXES[c]} {at[c]}/{sd.shape[c]}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"mean SD {sd.mean():.3f}", fontsize=7)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="SD over samples")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
