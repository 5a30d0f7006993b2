"""Write single images: PNG for 2D, NIfTI for 3D. All writes are atomic."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from synthcohort.core.atomic import atomic_path, atomic_write_bytes
from synthcohort.imaging.sample_files import png_bytes


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a (C, H, W) image in [0, 1]; C = 1 grey, C = 3 RGB."""
    atomic_write_bytes(path, png_bytes(image))


def write_nifti(
    path: str | Path,
    volume: np.ndarray,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    dtype: type = np.float32,
) -> None:
    """Write a (C, D, H, W) or (D, H, W) volume as NIfTI with a diagonal affine from spacing.

    Axis order on disk is the array order (D, H, W) → NIfTI (i, j, k).
    """
    arr = np.asarray(volume)
    if arr.ndim == 4:
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    affine = np.diag([*map(float, spacing), 1.0])
    img = nib.Nifti1Image(arr.astype(dtype), affine)
    img.header.set_xyzt_units("mm")
    path = Path(path)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_path(path) as tmp:
        tmp_named = tmp.with_name(tmp.name + suffix)
        nib.save(img, tmp_named)
        tmp_named.replace(tmp)
