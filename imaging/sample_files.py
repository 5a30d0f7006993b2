"""Sample files on disk ⇄ arrays: the one place that reads and encodes PNG/NIfTI samples.

Everything that touches a sample file goes through here: the sample directory (``sample_dir``),
the archive export (``store.cohort_export``), the review thumbnails (``api.thumbnails``) and the
client's ``CohortDataset``. Arrays are float32 in [0, 1], channel first, as everywhere
(ARCHITECTURE.md): (C, H, W) for a 2D image, (C, D, H, W) for a volume.

- PNG: 8-bit grey or RGB(A) divided by 255; 16-bit grey (modes ``I;16``/``I``) by 65535.
- NIfTI: (D, H, W) → (1, D, H, W); a 4th axis on disk is the channel axis (channel last, as
  ``write_nifti`` writes it).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from synthcohort.core.errors import InvalidInputError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def is_volume_file(name: str) -> bool:
    return name.endswith((".nii", ".nii.gz"))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float → uint8 (clipped, rounded)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def read_png(path: str | Path) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]."""
    with Image.open(path) as im:
        full = 65535.0 if im.mode in SIXTEEN_BIT_MODES else 255.0
        arr = np.asarray(im, dtype=np.float32) / np.float32(full)
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)


def read_nifti(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """(C, D, H, W) float32 and the voxel spacing (mm) of the first three axes."""
    img = nib.load(str(path))
    arr = np.asarray(img.get_fdata(dtype=np.float32))
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return (arr[None] if arr.ndim == 3 else np.moveaxis(arr, -1, 0)), spacing


def read_sample_file(path: str | Path) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """A PNG or NIfTI sample as float32 channel first, with its spacing when the file records
    one; a missing or unreadable file is an ``InvalidInputError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("listed in manifest.csv but missing", path=path)
    try:
        if is_volume_file(path.name):
            return read_nifti(path)
        return read_png(path), None
    except Exception as exc:  # corrupt file: name it and say why
        raise InvalidInputError(f"cannot be read ({exc.__class__.__name__}: {exc})", path=path) from exc


def preview(image: np.ndarray) -> np.ndarray:
    """The 2D view of a (C, *spatial) image, as PIL takes it: (H, W) grey or (H, W, 3) colour.
    A volume shows its middle slice along depth; a fourth channel (alpha) is dropped."""
    x = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if x.ndim == 4:  # (C, D, H, W)
        x = x[:, x.shape[1] // 2]
    return x[0] if x.shape[0] == 1 else np.moveaxis(x[:3], 0, -1)


def encode_png(view: np.ndarray, scale: int = 1) -> bytes:
    """PNG of a view in [0, 1] ((H, W) or (H, W, 3)), enlarged ``scale`` times without smoothing."""
    a = to_uint8(view)
    if scale > 1:
        a = np.kron(a, np.ones((scale, scale) + (1,) * (a.ndim - 2), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of a 2D sample, (C, H, W) in [0, 1] with C = 1 grey or C = 3 RGB, at full precision."""
    arr = np.asarray(image)
    if arr.ndim != 3:
        raise InvalidInputError(f"PNG holds 2D images only, got shape {arr.shape}", field="format")
    return encode_png(arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1))


def read_manifest(directory: str | Path) -> list[dict[str, str]]:
    """The rows of ``directory/manifest.csv`` (a sample dir's or an exported cohort's)."""
    manifest = Path(directory) / "manifest.csv"
    if not manifest.is_file():
        raise InvalidInputError("no manifest.csv in the sample directory", path=Path(directory))
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
