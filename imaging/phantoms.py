"""Generated, seeded, imbalanced phantom images so the demo runs on a machine with no data.

2D: an "organ" (a rotated ellipse with smooth texture) on a dark background; the majority class
``normal`` is plain tissue, the minority class ``lesion`` (1 in 6 in 2D, 1 in 11 in 3D) adds a
bright round lesion inside the organ, with its mask. 3D: the same with an ellipsoid and a
spherical lesion. The shapes are simple on purpose: a small GAN learns them in minutes on a CPU, and whether a
sample has a lesion is easy to check.

Each sample is drawn from its own sub-seed ``derive_seed(seed, "phantom", dims, split, i)``, so
the same seed gives the same images whatever counts are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from synthcohort.core.seeding import derive_seed, numpy_rng

CLASSES = ["normal", "lesion"]
# (majority, minority) per split. 2D, 5:1: the validation gates compare N = 64 lesion images (half of the
# 128 in train is the real reference sample, validation.reference) against a 64-image hold-out, twice the
# domain encoder's 32 features, the least N at which FD's covariance is stable (frechet.sample_size_warnings).
COUNTS_2D = {"train": (640, 128), "val": (100, 20), "test": (320, 64)}
COUNTS_3D = {"train": (200, 20), "val": (50, 5), "test": (50, 5)}


@dataclass
class PhantomSplit:
    images: np.ndarray  # (N, 1, *S) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64; 0 normal, 1 lesion
    masks: np.ndarray  # (N, 1, *S) uint8: the lesion (all zero for normal)
    sample_ids: list[str]


def phantom_image(
    rng: np.random.Generator, size: tuple[int, ...], lesion: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom (2D or 3D by ``len(size)``): returns (image float32 [0, 1], lesion mask uint8)."""
    d = len(size)
    axes = np.meshgrid(*[(np.arange(n) + 0.5) / n - 0.5 for n in size], indexing="ij")
    grid = np.stack(axes, axis=-1)  # (*S, d) in [-0.5, 0.5]
    centre = rng.uniform(-0.05, 0.05, d)
    semi = rng.uniform(0.28, 0.40, d)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # random rotation of the organ
    local = (grid - centre) @ q
    organ = ((local / semi) ** 2).sum(-1) <= 1.0
    texture = gaussian_filter(rng.normal(size=size), sigma=max(1.0, size[0] / 16))
    texture /= texture.std() + 1e-8
    img = np.full(size, 0.06) + rng.normal(0, 0.015, size)
    img = np.where(organ, 0.42 + 0.06 * texture, img)
    img = gaussian_filter(img, sigma=0.6)  # soft organ border
    mask = np.zeros(size, dtype=np.uint8)
    if lesion:
        r = rng.uniform(0.07, 0.11)
        # a point well inside the organ: direction × fraction of the semi-axes, back to image frame
        u = rng.normal(size=d)
        u /= np.linalg.norm(u)
        c = centre + (u * semi * rng.uniform(0.0, 0.45)) @ q.T
        dist = np.sqrt(((grid - c) ** 2).sum(-1))
        mask = (dist <= r).astype(np.uint8)
        bump = 1.0 / (1.0 + np.exp((dist - r) / 0.01))  # bright disk with a soft edge
        img = img + 0.4 * bump
    return np.clip(img, 0.0, 1.0).astype(np.float32), mask


def make_phantoms(
    dims: int = 2, *, seed: int = 0, size: int | None = None, counts: dict[str, tuple[int, int]] | None = None
) -> dict[str, PhantomSplit]:
    """The phantom data set: split name → arrays. 2D defaults to 32×32, 3D to 32³."""
    if dims not in (2, 3):
        raise ValueError("dims must be 2 or 3")
    n = size or 32
    shape = (n,) * dims
    counts = counts or (COUNTS_2D if dims == 2 else COUNTS_3D)
    out: dict[str, PhantomSplit] = {}
    for split, (n_major, n_minor) in counts.items():
        labels = np.asarray([0] * n_major + [1] * n_minor, dtype=np.int64)
        order = numpy_rng(derive_seed(seed, "phantom-order", dims, split)).permutation(len(labels))
        labels = labels[order]
        images = np.empty((len(labels), 1, *shape), np.float32)
        masks = np.empty((len(labels), 1, *shape), np.uint8)
        for i, lab in enumerate(labels):
            rng = numpy_rng(derive_seed(seed, "phantom", dims, split, i))
            images[i, 0], masks[i, 0] = phantom_image(rng, shape, lesion=bool(lab))
        out[split] = PhantomSplit(images, labels, masks, [f"phantom-{split}-{i:05d}" for i in range(len(labels))])
    return out
