"""3D sources: NIfTI volumes (with optional label masks) and DICOM series.

Each volume is normalised on its own (MR percentiles) or by a fixed CT window, then resampled to
the target grid (default 32×48×32): trilinear with anti-aliasing for images, nearest for masks.
Masks are stored binary (foreground = label > 0); the label values seen are recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthcohort.core.atomic import sha256_file
from synthcohort.core.errors import InvalidInputError
from synthcohort.imaging.normalisation import apply_normalisation, default_normalisation
from synthcohort.imaging.readers import (
    group_dicom_series,
    read_dicom_series,
    read_nifti,
)
from synthcohort.imaging.resizing import (
    check_size,
    resampled_spacing,
    resize_image,
    resize_mask,
)
from synthcohort.store.importers.assembly import (
    DEFAULT_3D_SIZE,
    ImportOptions,
    LoadedSample,
    sha256_of_hashes,
)

# DICOM Modality (0008,0060) → synthcohort modality
DICOM_MODALITIES = {
    "CT": "CT", "MR": "MR", "CR": "XR", "DX": "XR", "MG": "XR", "RF": "XR", "XA": "XR", "PX": "XR",
    "US": "US", "OP": "fundus", "OPT": "fundus",
}


@dataclass
class VolumeFacts:
    """What the volumes of one import had in common (or not), for the metadata."""

    source_spacings: set = field(default_factory=set)
    orientations: set = field(default_factory=set)
    shapes: list = field(default_factory=list)
    mask_values: set = field(default_factory=set)
    slice_thickness: set = field(default_factory=set)
    dicom_modalities: set = field(default_factory=set)

    def details(self) -> dict:
        shapes = np.asarray(self.shapes) if self.shapes else np.zeros((0, 3))
        out: dict = {
            "source_spacing": [list(s) for s in sorted(self.source_spacings)],
            "source_orientation": sorted(self.orientations),
            "source_shape_min": [int(v) for v in shapes.min(axis=0)] if len(shapes) else [],
            "source_shape_max": [int(v) for v in shapes.max(axis=0)] if len(shapes) else [],
        }
        if self.mask_values:
            out["mask_label_values"] = sorted(int(v) for v in self.mask_values)
            out["mask_foreground"] = "label > 0"
        if self.slice_thickness:
            out["slice_thickness"] = sorted(self.slice_thickness)
        if self.dicom_modalities:
            out["dicom_modality"] = sorted(self.dicom_modalities)
        return out


def target_size(opts: ImportOptions) -> tuple[int, ...]:
    return check_size(opts.size, 3) if opts.size else DEFAULT_3D_SIZE


def volume_normalisation(opts: ImportOptions, modality: str) -> dict:
    return opts.normalisation or default_normalisation(modality, np.dtype(np.float32), volumetric=True)


def load_nifti_pairs(
    pairs: list[tuple[Path, Path | None]], *, root: Path, label: int, opts: ImportOptions,
    norm: dict, facts: VolumeFacts, done: int = 0, total: int | None = None,
) -> list[LoadedSample]:
    """Load (image, optional label mask) NIfTI pairs as samples of one class."""
    size = target_size(opts)
    out: list[LoadedSample] = []
    total = total or len(pairs)
    for k, (img_path, mask_path) in enumerate(pairs):
        vol = read_nifti(img_path)
        image = resize_image(apply_normalisation(vol.data, norm)[None], size)
        spacing = resampled_spacing(vol.spacing, vol.data.shape, size)
        facts.source_spacings.add(tuple(round(v, 4) for v in vol.spacing))
        facts.orientations.add(vol.orientation)
        facts.shapes.append(vol.data.shape)
        sample = LoadedSample(
            sample_id=img_path.relative_to(root).as_posix(), label=label, image=image,
            source_file=img_path.relative_to(root).as_posix(), source_sha256=sha256_file(img_path),
            spacing=spacing, where=img_path,
        )
        if mask_path is not None:
            lab = read_nifti(mask_path)
            if lab.data.shape != vol.data.shape:
                raise InvalidInputError(
                    f"label shape {lab.data.shape} differs from image {img_path.name} shape {vol.data.shape}",
                    path=mask_path,
                )
            values = np.unique(lab.data)
            if (values < 0).any() or not np.allclose(values, np.round(values)):
                raise InvalidInputError("label values are not non-negative integers", path=mask_path)
            facts.mask_values.update(int(v) for v in values if v > 0)
            sample.mask = resize_mask((lab.data > 0).astype(np.uint8)[None], size)
            sample.mask_file = mask_path.relative_to(root).as_posix()
            sample.mask_sha256 = sha256_file(mask_path)
        out.append(sample)
        opts.report(done + k + 1, total)
    return out


def load_dicom_folder(
    files: list[Path], *, root: Path, where: Path, label: int, opts: ImportOptions,
    facts: VolumeFacts, norm_holder: dict,
) -> list[LoadedSample]:
    """Every series among ``files`` becomes one sample: 3D, or 2D for a single-slice series
    (a radiograph), which keeps its size unless a 2D ``size`` is given."""
    groups = group_dicom_series(files)
    out: list[LoadedSample] = []
    for uid in sorted(groups):
        series = read_dicom_series(uid, groups[uid], where=where)
        modality = opts.modality or DICOM_MODALITIES.get(series.modality.upper(), "other")
        if "modality" in norm_holder and norm_holder["modality"] != modality:
            raise InvalidInputError(
                f"series {uid} is {modality} but earlier series are {norm_holder['modality']}; "
                "import them separately or pass --modality",
                path=where,
            )
        norm_holder["modality"] = modality
        flat = series.data.shape[0] == 1  # a single-slice series (radiograph): a 2D sample
        norm = norm_holder.setdefault(
            "normalisation",
            opts.normalisation or default_normalisation(modality, np.dtype(np.float32), volumetric=not flat),
        )
        if flat:
            image = apply_normalisation(series.data, norm)  # (1, H, W): channel first
            sample_size = check_size(opts.size, 2) if opts.size else image.shape[1:]
            image = resize_image(image, sample_size)
            spacing = resampled_spacing(series.spacing[1:], series.data.shape[1:], sample_size)
        else:
            size = target_size(opts)
            image = resize_image(apply_normalisation(series.data, norm)[None], size)
            spacing = resampled_spacing(series.spacing, series.data.shape, size)
        facts.source_spacings.add(series.spacing)
        facts.orientations.add(series.orientation)
        facts.shapes.append(series.data.shape)
        facts.dicom_modalities.add(series.modality)
        if series.slice_thickness is not None:
            facts.slice_thickness.add(series.slice_thickness)
        folder = series.files[0].parent.relative_to(root).as_posix()
        uid_hash = hashlib.sha256(uid.encode()).hexdigest()[:12]
        out.append(
            LoadedSample(
                sample_id=f"{folder}#series-{uid_hash}",
                label=label, image=image,
                source_file=f"{folder}/",
                source_sha256=sha256_of_hashes([sha256_file(p) for p in series.files]),
                spacing=spacing,
                where=where,
            )
        )
    return out
