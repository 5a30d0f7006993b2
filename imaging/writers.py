"""Write single images: PNG for 2D, NIfTI for 3D. All writes are atomic."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from synthcohort.core.atomic import atomic_path, atomic_write_bytes


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float → uint8 (clipped, rounded)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a (C, H, W) or (H, W) image in [0, 1]; C = 1 grey, C = 3 RGB."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    buf = io.BytesIO()
    Image.fromarray(to_uint8(arr)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_nifti(
    path: str | Path,
    volume: np.ndarray,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    dtype: type = np.float32,
) -> None:
    """Write a (C, D, H, W) or (D, H, W) volume as NIfTI with a diagonal affine from spacing.

    Axis order on disk is the array order (D, H, W) → NIfTI (i, j, k).
    """
    import nibabel as nib

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
