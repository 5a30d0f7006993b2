"""Immutable, content-addressed dataset versions on disk.

Layout of one version (``<datasets_dir>/<id>/``)::

    dataset.json   DatasetMeta
    samples.csv    one row per sample: sample_id, split, label, class, source file + sha256,
                   mask file + sha256, spacing
    train.npz      images (N, C, *S) uint8 or float32, labels int64 (N,), masks uint8 (N, 1, *S)
    val.npz        (optional masks), sample_ids
    test.npz       the hold-out: only handed out for purpose="validation"

The id is ``ds-`` + the first 16 hex digits of a sha256 over the stored arrays (images as uint8
when every value is k/255, else float32) and the canonical metadata (everything except ``id``, ``created_at`` and ``source``: where the
files were read from is provenance, not content, so the same files imported from another folder
or from an archive of it get the same id; per-file checksums in samples.csv are hashed). Committing the same content
twice returns the existing version.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from synthcohort.core import layout
from synthcohort.core.atomic import atomic_dir
from synthcohort.core.errors import HoldoutAccessError, InvalidInputError, NotFoundError

SPLITS = ("train", "val", "test")
HOLDOUT = "test"
PURPOSES = ("training", "validation")
MODALITIES = ("CT", "MR", "XR", "US", "fundus", "other")
SAMPLE_FIELDS = [
    "sample_id", "split", "label", "class", "source_file", "source_sha256", "mask_file",
    "mask_sha256", "spacing",
]

Modality = Literal["CT", "MR", "XR", "US", "fundus", "other"]


class DatasetMeta(BaseModel):
    """What a dataset version holds; ``dataset.json``."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    modality: Modality
    spatial_dims: int
    channels: int
    image_size: tuple[int, ...]
    spacing: tuple[float, ...] | None = None
    classes: list[str]
    counts: dict[str, dict[str, int]]
    normalisation: dict[str, Any]
    source: dict[str, Any]
    has_masks: bool
    split_origin: str
    created_at: str
    details: dict[str, Any] = {}  # format-specific facts: orientation, mask label values, ...


@dataclass
class SplitArrays:
    images: np.ndarray  # float32 (N, C, *S) in [0, 1]
    labels: np.ndarray  # int64 (N,)
    masks: np.ndarray | None  # uint8 (N, 1, *S) or None
    sample_ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class SampleRecord:
    """Provenance of one stored sample."""

    sample_id: str
    split: str
    label: int
    class_name: str
    source_file: str
    source_sha256: str
    mask_file: str = ""
    mask_sha256: str = ""
    spacing: str = ""


@dataclass
class DatasetBuild:
    """Everything an importer produced, before it becomes an immutable version.

    ``splits`` maps split name → arrays; ``records`` lists the samples in split order (train,
    val, test) and within a split in array order.
    """

    name: str
    modality: str
    classes: list[str]
    splits: dict[str, SplitArrays]
    records: list[SampleRecord]
    normalisation: dict[str, Any]
    source: dict[str, Any]
    split_origin: str
    spacing: tuple[float, ...] | None = None
    details: dict[str, Any] = field(default_factory=dict)


class DatasetVersion:
    """A committed dataset version; reads its arrays lazily from disk."""

    def __init__(self, path: Path, meta: DatasetMeta):
        self.path = Path(path)
        self.meta = meta

    @property
    def id(self) -> str:
        return self.meta.id

    def __repr__(self) -> str:
        return f"DatasetVersion({self.meta.id!r}, name={self.meta.name!r})"

    def split(self, name: str, purpose: str = "training") -> SplitArrays:
        """The arrays of one split. The hold-out (test) needs ``purpose="validation"``."""
        if name not in SPLITS:
            raise InvalidInputError(f"unknown split {name!r}; one of {', '.join(SPLITS)}", field="split")
        if purpose not in PURPOSES:
            raise InvalidInputError(f"unknown purpose {purpose!r}; one of {', '.join(PURPOSES)}", field="purpose")
        if name == HOLDOUT and purpose != "validation":
            raise HoldoutAccessError(
                f"the {HOLDOUT} split of {self.meta.id} is the hold-out; only validation may read it",
                field="split",
            )
        path = self.path / f"{name}.npz"
        if not path.is_file():
            raise NotFoundError(f"{self.meta.id} has no {name} split", field="split")
        return _load_split(path)

    def class_index(self, name: str) -> int:
        """Label index of a class name."""
        try:
            return self.meta.classes.index(name)
        except ValueError:
            raise InvalidInputError(
                f"unknown class {name!r} in {self.meta.id}; known: {', '.join(self.meta.classes)}",
                field="class",
            ) from None

    def samples(self, split: str | None = None) -> list[SampleRecord]:
        """Per-sample provenance (source file and checksum), optionally of one split."""
        if split is not None and split not in SPLITS:
            raise InvalidInputError(f"unknown split {split!r}; one of {', '.join(SPLITS)}", field="split")
        with open(self.path / "samples.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        return [
            SampleRecord(
                sample_id=r["sample_id"], split=r["split"], label=int(r["label"]), class_name=r["class"],
                source_file=r["source_file"], source_sha256=r["source_sha256"],
                mask_file=r["mask_file"], mask_sha256=r["mask_sha256"], spacing=r["spacing"],
            )
            for r in rows
            if split is None or r["split"] == split
        ]


def _load_split(path: Path) -> SplitArrays:
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
        images = images.astype(np.float32) / np.float32(255.0) if images.dtype == np.uint8 else images.astype(np.float32)
        masks = z["masks"].astype(np.uint8) if "masks" in z.files else None
        return SplitArrays(images, z["labels"].astype(np.int64), masks, [str(s) for s in z["sample_ids"]])


def _is_8bit(images: np.ndarray) -> bool:
    """True when float images are exactly k/255 values, so uint8 storage is lossless."""
    q = np.rint(images * 255.0).astype(np.uint8)
    return bool(np.array_equal(q.astype(np.float32) / np.float32(255.0), images))


class DatasetStore:
    """The dataset versions under ``root`` (default ``layout.datasets_dir()``)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else layout.datasets_dir()

    def list(self) -> list[DatasetMeta]:
        """All committed versions, oldest first."""
        if not self.root.is_dir():
            return []
        metas = []
        for d in self.root.iterdir():
            if d.name.startswith("ds-") and (d / "dataset.json").is_file():
                metas.append(_read_meta(d))
        return sorted(metas, key=lambda m: (m.created_at, m.id))

    def get(self, dataset_id: str) -> DatasetVersion:
        path = self.root / dataset_id
        if not dataset_id.startswith("ds-") or "/" in dataset_id or not (path / "dataset.json").is_file():
            raise NotFoundError(f"no dataset version {dataset_id!r}", field="dataset_id")
        return DatasetVersion(path, _read_meta(path))

    def commit(self, build: DatasetBuild) -> DatasetVersion:
        """Validate a build and write it as an immutable version; returns the (maybe existing) version."""
        meta_fields, arrays = _check_build(build)
        for sa in arrays.values():  # store 8-bit content as uint8: 4x smaller, exactly the same values
            if _is_8bit(sa.images):
                sa.images = np.rint(sa.images * 255.0).astype(np.uint8)
        samples_csv = _samples_csv(build.records)
        dataset_id = content_id(meta_fields, arrays, samples_csv)
        final = self.root / dataset_id
        if (final / "dataset.json").is_file():
            return self.get(dataset_id)
        meta = DatasetMeta(
            id=dataset_id, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta_fields
        )
        with atomic_dir(final) as tmp:
            tmp.chmod(0o755)  # mkdtemp makes 0700; the API and workers may run as other users
            for name, sa in arrays.items():
                payload = {"images": sa.images, "labels": sa.labels, "sample_ids": np.asarray(sa.sample_ids, dtype=str)}
                if sa.masks is not None:
                    payload["masks"] = sa.masks
                np.savez(tmp / f"{name}.npz", **payload)
            (tmp / "samples.csv").write_text(samples_csv, encoding="utf-8")
            (tmp / "dataset.json").write_text(meta.model_dump_json(indent=2), encoding="utf-8")
        return self.get(dataset_id)


def _read_meta(path: Path) -> DatasetMeta:
    return DatasetMeta.model_validate_json((path / "dataset.json").read_text(encoding="utf-8"))


def _check_build(build: DatasetBuild) -> tuple[dict[str, Any], dict[str, SplitArrays]]:
    """Check the arrays follow the conventions and derive the metadata fields from them."""
    if build.modality not in MODALITIES:
        raise InvalidInputError(f"unknown modality {build.modality!r}; one of {', '.join(MODALITIES)}", field="modality")
    if not build.classes or len(set(build.classes)) != len(build.classes):
        raise InvalidInputError(f"class names must be unique and non-empty: {build.classes}", field="classes")
    if "train" not in build.splits or len(build.splits["train"]) == 0:
        raise InvalidInputError("the train split is empty", field="splits")
    arrays: dict[str, SplitArrays] = {}
    shape = None
    has_masks = None
    for name in SPLITS:
        sa = build.splits.get(name)
        if sa is None:
            continue
        images = np.ascontiguousarray(sa.images, dtype=np.float32)
        labels = np.ascontiguousarray(sa.labels, dtype=np.int64)
        if images.ndim not in (4, 5) or len(images) != len(labels) or len(sa.sample_ids) != len(labels):
            raise InvalidInputError(f"{name}: images {images.shape}, {len(labels)} labels, {len(sa.sample_ids)} ids", field="splits")
        if shape is None:
            shape = images.shape[1:]
        elif images.shape[1:] != shape:
            raise InvalidInputError(f"{name}: image shape {images.shape[1:]} differs from {shape}", field="splits")
        if len(images) and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise InvalidInputError(f"{name}: images are not in [0, 1]", field="splits")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(build.classes)):
            raise InvalidInputError(f"{name}: labels outside 0..{len(build.classes) - 1}", field="splits")
        masks = None
        if sa.masks is not None:
            masks = np.ascontiguousarray(sa.masks, dtype=np.uint8)
            if masks.shape != (len(images), 1, *images.shape[2:]) or masks.max(initial=0) > 1:
                raise InvalidInputError(f"{name}: masks {masks.shape} must be (N, 1, *S) in {{0, 1}}", field="splits")
        if has_masks is None:
            has_masks = masks is not None
        elif has_masks != (masks is not None):
            raise InvalidInputError("some splits have masks and others not", field="splits")
        arrays[name] = SplitArrays(images, labels, masks, [str(s) for s in sa.sample_ids])
    all_ids = [s for sa in arrays.values() for s in sa.sample_ids]
    if len(set(all_ids)) != len(all_ids):
        raise InvalidInputError("sample ids are not unique", field="sample_ids")
    counts = {
        name: {c: int((sa.labels == i).sum()) for i, c in enumerate(build.classes)} for name, sa in arrays.items()
    }
    meta_fields = dict(
        name=build.name,
        modality=build.modality,
        spatial_dims=len(shape) - 1,
        channels=int(shape[0]),
        image_size=tuple(int(v) for v in shape[1:]),
        spacing=tuple(float(v) for v in build.spacing) if build.spacing is not None else None,
        classes=list(build.classes),
        counts=counts,
        normalisation=build.normalisation,
        source=build.source,
        has_masks=bool(has_masks),
        split_origin=build.split_origin,
        details=build.details,
    )
    return meta_fields, arrays


def _samples_csv(records: list[SampleRecord]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SAMPLE_FIELDS)
    for r in records:
        w.writerow([r.sample_id, r.split, r.label, r.class_name, r.source_file, r.source_sha256,
                    r.mask_file, r.mask_sha256, r.spacing])
    return buf.getvalue()


def content_id(meta_fields: dict[str, Any], arrays: dict[str, SplitArrays], samples_csv: str) -> str:
    """``ds-`` + 16 hex of sha256(canonical metadata, samples.csv, stored array bytes)."""
    canonical = {k: v for k, v in meta_fields.items() if k not in ("id", "created_at", "source")}
    h = hashlib.sha256()
    h.update(json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=list).encode())
    h.update(samples_csv.encode())
    for name in SPLITS:
        sa = arrays.get(name)
        if sa is None:
            continue
        h.update(name.encode())
        for a in (sa.images, sa.labels, sa.masks):
            if a is not None:
                h.update(repr((a.dtype.str, a.shape)).encode())
                if a.size:
                    h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
        h.update("\x00".join(sa.sample_ids).encode())
    return "ds-" + h.hexdigest()[:16]
