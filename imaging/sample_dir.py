"""A sample directory: what `synthcohort sample` writes and `synthcohort validate` reads.

Layout::

    DIR/manifest.csv          file,class,seed,model_id,index,mask_file
    DIR/images/000000.png     2D (grey or RGB)   |  DIR/images/000000.nii.gz  3D
    DIR/masks/000000.png      only when mask-conditioned

Images are float32 in [0, 1], channel first (see :mod:`imaging`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthcohort.core.atomic import atomic_write_text
from synthcohort.core.errors import InvalidInputError
from synthcohort.imaging.sample_files import read_manifest, read_sample_file
from synthcohort.imaging.writers import write_nifti, write_png

MANIFEST_FIELDS = ["file", "class", "seed", "model_id", "index", "mask_file"]


@dataclass
class SampleSet:
    images: np.ndarray  # (N, C, *spatial) float32 in [0, 1]
    masks: np.ndarray | None  # (N, 1, *spatial) uint8, or None
    rows: list[dict[str, str]]  # manifest rows, same order


def write_sample_dir(
    out: str | Path,
    images: np.ndarray,
    *,
    class_name: str,
    seed: int,
    model_id: str,
    masks: np.ndarray | None = None,
    spacing: tuple[float, ...] | None = None,
    start_index: int = 0,
) -> list[dict[str, str]]:
    """Write images (and masks) plus manifest.csv; returns the manifest rows."""
    out = Path(out)
    spatial_dims = images.ndim - 2
    ext = ".png" if spatial_dims == 2 else ".nii.gz"
    rows: list[dict[str, str]] = []
    for i, img in enumerate(images):
        idx = start_index + i
        name = f"{idx:06d}{ext}"
        _write(out / "images" / name, img, spatial_dims, spacing)
        mask_file = ""
        if masks is not None:
            mask_file = f"masks/{name}"
            _write(out / mask_file, masks[i].astype(np.float32), spatial_dims, spacing, is_mask=True)
        rows.append(
            {"file": f"images/{name}", "class": class_name, "seed": str(seed),
             "model_id": model_id, "index": str(idx), "mask_file": mask_file}
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "manifest.csv", buf.getvalue())
    return rows


def _write(path: Path, arr: np.ndarray, spatial_dims: int, spacing, is_mask: bool = False) -> None:
    if spatial_dims == 2:
        write_png(path, arr)
    else:
        write_nifti(path, arr, spacing=tuple(spacing or (1.0, 1.0, 1.0)),
                    dtype=np.uint8 if is_mask else np.float32)


def read_sample_dir(directory: str | Path) -> SampleSet:
    """Read a sample directory back into arrays, checking every file exists and shapes agree."""
    directory = Path(directory)
    rows = read_manifest(directory)
    if not rows:
        raise InvalidInputError("manifest.csv lists no samples", path=directory / "manifest.csv")
    images, masks = [], []
    for row in rows:
        images.append(read_sample_file(directory / row["file"])[0])
        if row.get("mask_file"):
            masks.append((read_sample_file(directory / row["mask_file"])[0] > 0.5).astype(np.uint8))
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise InvalidInputError(f"images have mixed shapes {sorted(shapes)}", path=directory)
    if masks and len(masks) != len(images):
        raise InvalidInputError("only some samples have a mask_file", path=directory / "manifest.csv")
    return SampleSet(np.stack(images), np.stack(masks) if masks else None, rows)
