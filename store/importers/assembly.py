"""What every importer shares: the options of one import, a loaded sample, and turning a list
of loaded samples into a :class:`store.datasets.DatasetBuild` (shape checks, stratified split).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.progress import Progress, ProgressCallback
from synthcohort.store.datasets import DatasetBuild, SampleRecord, SplitArrays
from synthcohort.store.splits import split_origin, stratified_split

DEFAULT_3D_SIZE = (32, 48, 32)


@dataclass
class ImportOptions:
    """The user's choices for one import (see :func:`store.ingest.import_path`)."""

    name: str
    modality: str | None = None
    size: tuple[int, ...] | None = None
    normalisation: dict[str, Any] | None = None  # parsed --normalise, None = modality default
    classes: list[str] | None = None
    class_name: str = "all"
    seed: int = 0
    val: float = 0.15
    test: float = 0.15
    progress: ProgressCallback | None = None

    def report(self, step: int, total: int) -> None:
        if self.progress is not None:
            self.progress(Progress("import", step, total))


@dataclass
class LoadedSample:
    """One sample, already normalised to [0, 1] and on the target grid."""

    sample_id: str
    label: int
    image: np.ndarray  # (C, *S) float32
    source_file: str
    source_sha256: str
    mask: np.ndarray | None = None  # (1, *S) uint8
    mask_file: str = ""
    mask_sha256: str = ""
    spacing: tuple[float, ...] | None = None
    where: Path | None = None  # for error messages


@dataclass
class Provenance:
    """Dataset-level facts an importer hands to :func:`assemble`."""

    modality: str
    normalisation: dict[str, Any]
    source: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


def sha256_of_hashes(hashes: Sequence[str]) -> str:
    """A checksum of several files (a DICOM series): sha256 over their sha256s in order."""
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def check_same_shapes(samples: Sequence[LoadedSample], classes: Sequence[str]) -> None:
    """Every image must have the first one's shape; else name the odd file and suggest --size."""
    if not samples:
        return
    ref = samples[0]
    for s in samples[1:]:
        if s.image.shape != ref.image.shape:
            raise InvalidInputError(
                f"shape {tuple(s.image.shape)} (class {classes[s.label]!r}) differs from "
                f"{tuple(ref.image.shape)} of {ref.source_file}; pass a size (e.g. --size 64x64) to resample",
                path=s.where or s.source_file,
            )


def median_spacing(samples: Sequence[LoadedSample]) -> tuple[float, ...] | None:
    spacings = [s.spacing for s in samples if s.spacing is not None]
    if not spacings:
        return None
    return tuple(round(float(v), 4) for v in np.median(np.asarray(spacings), axis=0))


def assemble(
    samples: list[LoadedSample],
    classes: list[str],
    opts: ImportOptions,
    prov: Provenance,
    *,
    splits: dict[str, list[int]] | None = None,
    origin: str | None = None,
) -> DatasetBuild:
    """Stack samples into split arrays; without official ``splits``, split stratified (seeded)."""
    if not samples:
        raise InvalidInputError("no samples found", path=prov.source.get("path"))
    check_same_shapes(samples, classes)
    masks_present = {s.mask is not None for s in samples}
    if len(masks_present) != 1:
        odd = next(s for s in samples if s.mask is None)
        raise InvalidInputError("has no mask while other samples have one", path=odd.where or odd.source_file)
    if splits is None:
        labels = np.asarray([s.label for s in samples])
        idx = stratified_split(labels, seed=opts.seed, val=opts.val, test=opts.test)
        splits = {k: v.tolist() for k, v in idx.items()}
        origin = split_origin(opts.seed, opts.val, opts.test)
    has_masks = masks_present == {True}
    split_arrays: dict[str, SplitArrays] = {}
    records: list[SampleRecord] = []
    for name in ("train", "val", "test"):
        members = [samples[i] for i in splits.get(name, [])]
        split_arrays[name] = SplitArrays(
            images=np.stack([s.image for s in members]) if members
            else np.zeros((0, *samples[0].image.shape), np.float32),
            labels=np.asarray([s.label for s in members], dtype=np.int64),
            masks=(np.stack([s.mask for s in members]) if members else np.zeros((0, *samples[0].mask.shape), np.uint8))
            if has_masks else None,
            sample_ids=[s.sample_id for s in members],
        )
        records.extend(
            SampleRecord(
                sample_id=s.sample_id, split=name, label=s.label, class_name=classes[s.label],
                source_file=s.source_file, source_sha256=s.source_sha256, mask_file=s.mask_file,
                mask_sha256=s.mask_sha256,
                spacing="x".join(f"{v:g}" for v in s.spacing) if s.spacing is not None else "",
            )
            for s in members
        )
    return DatasetBuild(
        name=opts.name,
        modality=prov.modality,
        classes=list(classes),
        splits=split_arrays,
        records=records,
        normalisation=prov.normalisation,
        source=prov.source,
        split_origin=origin or "official",
        spacing=median_spacing(samples),
        details=prov.details,
    )


def resolve_classes(found: Sequence[str], given: Sequence[str] | None, *, where: Path | str) -> list[str]:
    """Class order: the user's ``--classes`` (which must cover what was found) or sorted found names."""
    if not given:
        return sorted(found)
    missing = [c for c in found if c not in given]
    if missing:
        raise InvalidInputError(
            f"classes {missing} found in the data are not in --classes ({', '.join(given)})", path=where
        )
    return list(given)

