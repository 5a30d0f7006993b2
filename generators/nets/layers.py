"""Picking the 2D or 3D variant of a layer from ``spatial_dims`` (as MONAI's ``Conv[...]``)."""

from __future__ import annotations

from torch import nn


def conv(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return {2: nn.Conv2d, 3: nn.Conv3d}[_check(spatial_dims)]


def _check(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return spatial_dims


def num_halvings(image_size: tuple[int, ...], min_size: int = 4, max_halvings: int = 4) -> int:
    """How many stride-2 stages a DCGAN-style net uses: halve until the smallest side
    would drop under ``min_size`` (28 → 2: 28, 14, 7; 64 → 4: 64 … 4)."""
    k, s = 0, min(image_size)
    while k < max_halvings and s // 2 >= min_size:
        s //= 2
        k += 1
    return k
