"""Import real images into an immutable dataset version: the one entry the CLI, API and workers call.

``import_path`` detects the format (MedMNIST npz, class folders, labels.csv, NIfTI, DICOM, or an
archive of any of them), reads, normalises and resamples, splits (official split if the source
has one, else stratified and seeded), and commits through :class:`store.datasets.DatasetStore`.
Nothing is left behind on error: archive extraction happens in a temporary folder under the data
root that is always removed, and the store only renames a fully written version into place.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from synthcohort.core.errors import InvalidInputError, SynthcohortError
from synthcohort.core.progress import Progress, ProgressCallback
from synthcohort.core.settings import get_settings
from synthcohort.imaging.normalisation import parse_normalisation
from synthcohort.imaging.phantoms import CLASSES, make_phantoms
from synthcohort.imaging.resizing import check_size
from synthcohort.store.archives import ARCHIVE_SUFFIXES, extract_archive, is_archive
from synthcohort.store.datasets import MODALITIES, DatasetBuild, DatasetStore, DatasetVersion, SampleRecord, SplitArrays
from synthcohort.store.importers.assembly import ImportOptions
from synthcohort.store.importers.folders import (
    LAYOUTS,
    detect_layout,
    import_folder,
    list_files,
    subfolders,
)
from synthcohort.store.importers.medmnist import import_medmnist

FORMATS = ("auto", "medmnist", *LAYOUTS)
MODALITY_ALIASES = {
    "ct": "CT", "mr": "MR", "mri": "MR", "xr": "XR", "x-ray": "XR", "xray": "XR", "cxr": "XR", "cr": "XR",
    "dx": "XR", "us": "US", "ultrasound": "US", "fundus": "fundus", "other": "other",
}


def normalise_modality(modality: str | None) -> str | None:
    if modality is None:
        return None
    m = MODALITY_ALIASES.get(modality.strip().lower())
    if m is None:
        raise InvalidInputError(f"unknown modality {modality!r}; one of {', '.join(MODALITIES)}", field="modality")
    return m


def _default_name(path: Path) -> str:
    name = path.name
    for suffix in (*ARCHIVE_SUFFIXES, ".npz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def temp_root() -> Path:
    """Where imports unpack archives: inside the data root, so it is on the store's disk."""
    return get_settings().root / "tmp"


def import_path(
    path: str | Path,
    *,
    name: str | None = None,
    format: str = "auto",
    modality: str | None = None,
    size: tuple[int, ...] | None = None,
    normalise: str | None = None,
    class_name: str | None = None,
    classes: list[str] | None = None,
    seed: int = 0,
    val: float = 0.15,
    test: float = 0.15,
    store: DatasetStore | None = None,
    progress: ProgressCallback | None = None,
) -> DatasetVersion:
    """Import a file, folder or archive of medical images as a new (or existing) dataset version.

    ``size`` resamples every image (2D: (H, W), 3D: (D, H, W); 3D sources default to 32×48×32);
    ``normalise`` overrides the modality's default intensity mapping (see
    :func:`imaging.normalisation.parse_normalisation`); ``classes`` names the labels in order;
    ``class_name`` names the single class of a source without classes (default "all");
    ``seed``/``val``/``test`` drive the stratified split of sources without an official one.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidInputError("does not exist", path=path)
    if format not in FORMATS:
        raise InvalidInputError(f"unknown format {format!r}; one of {', '.join(FORMATS)}", field="format")
    if classes is not None:
        classes = [c.strip() for c in classes]
        if not classes or any(not c for c in classes) or len(set(classes)) != len(classes):
            raise InvalidInputError(f"class names must be unique and non-empty: {classes}", field="classes")
    opts = ImportOptions(
        name=name or _default_name(path.resolve()),
        modality=normalise_modality(modality),
        size=check_size(size) if size else None,
        normalisation=parse_normalisation(normalise) if normalise else None,
        classes=classes,
        class_name=class_name or "all",
        seed=int(seed),
        val=val,
        test=test,
        progress=progress,
    )
    store = store or DatasetStore()
    if is_archive(path):
        tmp_parent = temp_root()
        tmp_parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="import-", dir=tmp_parent))
        try:
            extract_archive(path, tmp)
            root = _archive_root(tmp)
            inner = _pick_format(root, format)
            build = _build(root, inner, opts, source_path=path)
            build.source = {**build.source, "archive": path.name}
        except SynthcohortError as exc:
            raise _in_archive(exc, path, tmp) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                tmp_parent.rmdir()  # only succeeds when no other import is unpacking
            except OSError:
                pass
    else:
        build = _build(path, _pick_format(path, format), opts, source_path=path)
    return store.commit(build)


def _in_archive(exc: SynthcohortError, archive: Path, tmp: Path) -> SynthcohortError:
    """The error re-addressed to the archive and its member, not the scratch folder's path."""
    member = exc.member
    if member is None and exc.path is not None and Path(exc.path).is_relative_to(tmp):
        member = Path(exc.path).relative_to(tmp).as_posix()
    reason = exc.reason.replace(str(tmp) + "/", "")
    return type(exc)(reason, path=archive, field=exc.field, member=member)


def _archive_root(tmp: Path) -> Path:
    """An archive that holds one top folder (``data/...``) is read from inside that folder."""
    entries = subfolders(tmp)
    files = list_files(tmp)
    if len(entries) == 1 and not files:
        return entries[0]
    return tmp


def _pick_format(path: Path, format: str) -> str:
    if path.is_file():
        if path.suffix.lower() == ".npz":
            if format not in ("auto", "medmnist"):
                raise InvalidInputError(f"a .npz file cannot be read as {format}", path=path)
            return "medmnist"
        raise InvalidInputError(
            "a single file is not a dataset: import a MedMNIST .npz, a folder, or a .zip/.tar(.gz) archive",
            path=path,
        )
    npz = [p for p in list_files(path) if p.suffix.lower() == ".npz"]
    if format == "medmnist" or (format == "auto" and len(npz) == 1 and not subfolders(path)):
        if len(npz) != 1:
            raise InvalidInputError("format medmnist needs one .npz file", path=path)
        return "medmnist"
    return detect_layout(path) if format == "auto" else format


def _build(root: Path, fmt: str, opts: ImportOptions, *, source_path: Path):
    if fmt == "medmnist":
        npz = root if root.is_file() else next(p for p in list_files(root) if p.suffix.lower() == ".npz")
        build = import_medmnist(npz, opts)
        build.source = {**build.source, "path": str(source_path)}
        return build
    return import_folder(root, fmt, opts, source_path=source_path)


def import_demo(
    dims: int = 2, *, seed: int = 0, size: int | None = None, store: DatasetStore | None = None,
    progress: ProgressCallback | None = None,
) -> DatasetVersion:
    """Commit the generated phantom data set (:mod:`imaging.phantoms`) so the demo needs no files."""

    if dims not in (2, 3):
        raise InvalidInputError(f"dims must be 2 or 3, not {dims}", field="dims")
    splits = make_phantoms(dims, seed=seed, size=size)
    records = [
        SampleRecord(sample_id=sid, split=name, label=int(lab), class_name=CLASSES[int(lab)],
                     source_file=f"generated:imaging.phantoms seed={seed}", source_sha256="")
        for name, ph in splits.items()
        for sid, lab in zip(ph.sample_ids, ph.labels)
    ]
    build = DatasetBuild(
        name=f"phantom-{dims}d-seed{seed}",
        modality="other",
        classes=list(CLASSES),
        splits={k: SplitArrays(v.images, v.labels, v.masks, v.sample_ids) for k, v in splits.items()},
        records=records,
        normalisation={"method": "none", "note": "generated in [0, 1]"},
        source={"format": "phantom", "path": "generated", "generator": "synthcohort.imaging.phantoms.make_phantoms",
                "seed": seed, "dims": dims},
        split_origin="generated",
        spacing=(1.0,) * dims,
        details={"minority_class": "lesion", "lesion_masks": True},
    )
    if progress is not None:

        progress(Progress("import", 1, 1))
    return (store or DatasetStore()).commit(build)
