"""Resampling images and masks to a target grid.

Images use (bi/tri)linear interpolation after a Gaussian anti-aliasing blur on each axis that
is shrunk (sigma = (factor - 1) / 2, the rule scikit-image's ``resize(anti_aliasing=True)``
uses), so a 512-pixel slice shrunk to 48 does not alias. Masks use nearest neighbour so they
stay binary. Voxel centres are aligned as in ``torch.nn.functional.interpolate(...,
align_corners=False)``, so the field of view is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from synthcohort.core.errors import InvalidInputError


def parse_size(text: str) -> tuple[int, ...]:
    """``"64x64"`` → (64, 64); ``"32x48x32"`` → (32, 48, 32)."""
    try:
        size = tuple(int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError as exc:
        raise InvalidInputError(f"cannot parse {text!r}; write e.g. 64x64 or 32x48x32", field="size") from exc
    check_size(size)
    return size


def check_size(size: Sequence[int], spatial_dims: int | None = None) -> tuple[int, ...]:
    size = tuple(int(v) for v in size)
    if len(size) not in (2, 3) or any(v < 4 or v > 1024 for v in size):
        raise InvalidInputError(f"{size} is not 2 or 3 sizes between 4 and 1024", field="size")
    if spatial_dims is not None and len(size) != spatial_dims:
        raise InvalidInputError(
            f"{'x'.join(map(str, size))} has {len(size)} sizes but the images are {spatial_dims}D",
            field="size",
        )
    return size


def _source_coordinates(n_in: int, n_out: int) -> np.ndarray:
    """Input coordinate of every output pixel centre along one axis, pixel-centre aligned (the
    convention of ``align_corners=False``): ``x_in = (x_out + 0.5) * n_in / n_out - 0.5``."""
    return (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5


def _linear_along(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Linear interpolation along one axis (separable, so n-D linear = one pass per axis)."""
    n_in = x.shape[axis]
    c = np.clip(_source_coordinates(n_in, n_out), 0, n_in - 1)
    i0 = np.floor(c).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w = (c - i0).astype(np.float32).reshape(shape)
    return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def _nearest_along(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    n_in = x.shape[axis]
    idx = np.clip(np.floor(_source_coordinates(n_in, n_out) + 0.5).astype(np.int64), 0, n_in - 1)
    return np.take(x, idx, axis=axis)


def resize_image(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize a channel-first image (C, *S) of floats to (C, *size): anti-aliased, (tri)linear."""

    x = np.asarray(x, dtype=np.float32)
    size = tuple(int(v) for v in size)
    if tuple(x.shape[1:]) == size:
        return x.copy()
    sigma = [0.0] + [max(0.0, (s / t - 1.0) / 2.0) for s, t in zip(x.shape[1:], size)]
    if any(v > 0 for v in sigma):
        x = gaussian_filter(x, sigma=sigma, mode="nearest").astype(np.float32)
    for axis, n_out in enumerate(size, start=1):
        if x.shape[axis] != n_out:
            x = _linear_along(x, axis, n_out)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def resize_mask(m: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize a (1, *S) mask to (1, *size) with nearest neighbour; stays uint8 {0, 1}."""
    m = (np.asarray(m) > 0).astype(np.uint8)
    size = tuple(int(v) for v in size)
    for axis, n_out in enumerate(size, start=1):
        if m.shape[axis] != n_out:
            m = _nearest_along(m, axis, n_out)
    return m


def resampled_spacing(
    spacing: Sequence[float], shape: Sequence[int], size: Sequence[int]
) -> tuple[float, ...]:
    """Voxel spacing after resampling ``shape`` to ``size`` over the same field of view."""
    return tuple(round(float(sp) * s / t, 6) for sp, s, t in zip(spacing, shape, size))
