"""A downloaded cohort as a PyTorch dataset, with a MONAI datalist for MONAI pipelines.

Why: the user's training loop should read synthetic samples exactly like real ones —
``(image, label)`` with image float32 in [0, 1], channel first ((C, H, W) or (C, D, H, W)) as
MONAI array transforms expect, and ``label`` the dataset's class index, so a cohort can be
concatenated with the real training split. A cohort is downloaded and verified once into a
cache folder; the folder only appears after its ``SHA256SUMS`` check passed
(:meth:`synthcohort.client.Client.download`), so its presence means a complete copy and a
later instance reads it without the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from torch.utils.data import Dataset

from synthcohort.client import Client, verify_sha256sums
from synthcohort.core import layout
from synthcohort.core.errors import InvalidInputError, NotFoundError
from synthcohort.imaging.sample_files import read_manifest, read_nifti, read_png

FORMATS = ("png", "nifti", "dicom", "npz")


class CohortDataset(Dataset):
    """Samples of a cohort archive: ``ds[i] -> (image, label)`` (``(image, label, mask)`` with
    ``return_mask=True``). ``transform`` is applied to the image tensor only."""

    def __init__(
        self,
        cohort_id: str | None,
        *,
        client: Any = None,
        root: str | Path | None = None,
        format: str = "png",
        transform: Callable[[torch.Tensor], Any] | None = None,
        download: bool = True,
        refresh: bool = False,
        archive: str = "zip",
        return_mask: bool = False,
        _path: Path | None = None,
    ):
        if format not in FORMATS:
            raise InvalidInputError(f"{format!r} is not one of {', '.join(FORMATS)}", field="format")
        self.cohort_id = cohort_id
        self.transform = transform
        self.return_mask = return_mask
        if _path is not None:
            self.path = Path(_path)
        else:
            root = Path(root) if root is not None else layout.cache_dir() / "cohorts"
            self.path = root / f"{cohort_id}-{format}"
            if refresh or not (self.path / "datalist.json").is_file():
                if not download:
                    raise NotFoundError(f"cohort {cohort_id} ({format}) is not in the cache and download=False",
                                        path=self.path)
                if client is None:

                    client = Client()
                self.path = client.download(cohort_id, root, format=format, archive=archive)
        self._read_index()

    @classmethod
    def from_directory(cls, path: str | Path, *, transform: Callable[[torch.Tensor], Any] | None = None,
                       verify: bool = True, return_mask: bool = False) -> CohortDataset:
        """A cohort archive already extracted into ``path`` (checked against its SHA256SUMS
        unless ``verify=False``)."""
        path = Path(path)
        if not (path / "datalist.json").is_file():
            raise NotFoundError("no datalist.json: not an extracted synthcohort archive", path=path)
        if verify:

            verify_sha256sums(path)
        return cls(None, transform=transform, return_mask=return_mask, _path=path)

    # -- index ---------------------------------------------------------------------------------

    def _read_index(self) -> None:
        datalist_file = self.path / "datalist.json"
        try:
            doc = json.loads(datalist_file.read_text(encoding="utf-8"))
            self._items: list[dict[str, Any]] = list(doc["training"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"is not a synthcohort datalist ({exc})", path=datalist_file) from exc
        self.format: str = doc.get("format") or _guess_format(self._items)
        self.spatial_dims = 3 if doc.get("tensorImageSize") == "3D" else 2
        self.classes: dict[int, str] = {int(k): v for k, v in (doc.get("labels") or {}).items()}
        self.labels = [int(item["label"]) for item in self._items]
        self._npz: dict[str, np.ndarray] | None = None
        self.manifest: list[dict[str, str]] = (
            read_manifest(self.path) if (self.path / "manifest.csv").is_file() else [])

    @property
    def datalist(self) -> list[dict[str, Any]]:
        """MONAI-style items with absolute paths, e.g. for
        ``monai.data.Dataset(data=ds.datalist, transform=LoadImaged(keys="image"))``."""
        if self.format == "npz":
            raise InvalidInputError("an npz export has no per-image files; download png, nifti or dicom",
                                    field="format")
        out = []
        for item in self._items:
            entry = {"image": str(self.path / item["image"]), "label": int(item["label"])}
            if item.get("mask"):
                entry["mask"] = str(self.path / item["mask"])
            out.append(entry)
        return out

    def __len__(self) -> int:
        return len(self._items)

    # -- items ---------------------------------------------------------------------------------

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a cohort of {len(self)}")
        item = self._items[i]
        image = torch.from_numpy(np.ascontiguousarray(self._load(item, "image"), dtype=np.float32))
        if self.transform is not None:
            image = self.transform(image)
        label = int(item["label"])
        if not self.return_mask:
            return image, label
        if not item.get("mask"):
            raise InvalidInputError("this cohort has no masks", field="return_mask")
        mask = torch.from_numpy(np.ascontiguousarray(self._load(item, "mask") > 0.5).astype(np.uint8))
        return image, label, mask

    def _load(self, item: dict[str, Any], key: str) -> np.ndarray:
        if self.format == "npz":
            arrays = self._npz_arrays()
            arr = arrays["images" if key == "image" else "masks"][int(item["npz_row"])]
            return arr.astype(np.float32)
        path = self.path / item[key]
        try:
            if self.format == "png":
                return read_png(path)
            if self.format == "nifti":
                return _read_nifti(path, self.spatial_dims)
            return _read_dicom(path)
        except (InvalidInputError, NotFoundError):
            raise
        except Exception as exc:  # corrupt file: name it and say why
            raise InvalidInputError(f"cannot be read ({type(exc).__name__}: {exc})", path=path) from exc

    def _npz_arrays(self) -> dict[str, np.ndarray]:
        """cohort.npz read once (all of it: an npz member cannot be memory-mapped)."""
        if self._npz is None:
            with np.load(self.path / "cohort.npz", allow_pickle=False) as z:
                self._npz = {k: z[k] for k in z.files}
        return self._npz


def _guess_format(items: list[dict[str, Any]]) -> str:
    name = str(items[0]["image"]) if items else ""
    if name.endswith(".png"):
        return "png"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".npz"):
        return "npz"
    return "dicom"


def _read_nifti(path: Path, spatial_dims: int) -> np.ndarray:
    """A 2D export is a 1-slice volume (C, H, W, 1) once channel first; a 3D one (C, D, H, W)."""
    arr, _ = read_nifti(path)
    return arr[:, :, :, 0] if spatial_dims == 2 else arr


def _read_dicom(path: Path) -> np.ndarray:
    """A 2D file or a series folder written by :mod:`imaging.dicom_writer`, back in [0, 1]:
    stored 16-bit values / 65535 (8-bit RGB / 255), slices ordered along their normal."""

    files = sorted(path.glob("*.dcm")) if path.is_dir() else [path]
    if not files:
        raise NotFoundError("no DICOM files in the series folder", path=path)
    slices = [pydicom.dcmread(f) for f in files]
    if len(slices) > 1:
        iop = np.asarray(slices[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        slices.sort(key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=float))))
    planes = []
    for d in slices:
        full = 255.0 if int(d.BitsStored) == 8 else float(2 ** int(d.BitsStored) - 1)
        arr = d.pixel_array.astype(np.float32) / np.float32(full)
        planes.append(np.moveaxis(arr, -1, 0) if int(d.SamplesPerPixel) == 3 else arr[None])
    if path.is_dir():
        return np.stack([p[0] for p in planes])[None]
    return planes[0]
