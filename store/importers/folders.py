"""Folder layouts: class folders (ImageFolder), ``labels.csv``, NIfTI image/label pairs, DICOM.

Layouts, as :func:`detect_layout` tells them apart:
- ``csv``: ``labels.csv`` (columns ``file,label``) beside the files it names.
- ``nifti``: ``images/`` + ``labels/`` matched by file name, or ``X.nii.gz`` + ``X_seg.nii.gz`` /
  ``X_mask.nii.gz`` pairs in one folder; one class (``class_name``).
- ``dicom``: DICOM files anywhere below the folder; each series is one sample; one class.
- ``imagefolder``: one sub-folder per class holding pictures, NIfTI volumes or DICOM series.
Hidden files and ``__MACOSX`` folders are ignored.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from synthcohort.core.errors import InvalidInputError
from synthcohort.imaging.readers import is_dicom, is_nifti, is_picture, nifti_stem
from synthcohort.store.datasets import DatasetBuild
from synthcohort.store.importers.assembly import (
    ImportOptions,
    LoadedSample,
    Provenance,
    assemble,
    resolve_classes,
)
from synthcohort.store.importers.pictures import load_pictures, unify_channels
from synthcohort.store.importers.volumes import (
    VolumeFacts,
    load_dicom_folder,
    load_nifti_pairs,
    volume_normalisation,
)

MASK_SUFFIXES = ("_seg", "_mask")
LAYOUTS = ("imagefolder", "csv", "nifti", "dicom")


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name != "__MACOSX"


def list_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Regular, non-hidden files of a folder, sorted by path."""
    if recursive:
        found = [p for p in folder.rglob("*") if p.is_file() and all(_visible(q) for q in p.relative_to(folder).parents if q.name) and _visible(p)]
    else:
        found = [p for p in folder.iterdir() if p.is_file() and _visible(p)]
    return sorted(found)


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def detect_layout(root: Path) -> str:
    files = list_files(root)
    if (root / "labels.csv").is_file():
        return "csv"
    if (root / "images").is_dir() and any(is_nifti(p) for p in list_files(root / "images")):
        return "nifti"
    if any(is_nifti(p) for p in files):
        return "nifti"
    if any(is_dicom(p) for p in files):
        return "dicom"
    if subfolders(root):
        return "imagefolder"
    if any(is_picture(p) for p in files):
        return "imagefolder"  # a flat folder of pictures: one class
    raise InvalidInputError(
        "cannot tell the format: no labels.csv, NIfTI, DICOM, class folders or pictures found", path=root
    )


def import_folder(root: Path, layout: str, opts: ImportOptions, *, source_path: Path) -> DatasetBuild:
    if layout == "csv":
        return _import_csv(root, opts, source_path)
    if layout == "nifti":
        return _import_nifti(root, opts, source_path)
    if layout == "dicom":
        return _import_dicom(root, opts, source_path)
    if layout == "imagefolder":
        return _import_imagefolder(root, opts, source_path)
    raise InvalidInputError(f"unknown format {layout!r}", field="format")


# --- NIfTI -------------------------------------------------------------------------------------


def nifti_pairs(root: Path) -> list[tuple[Path, Path | None]]:
    """(image, mask or None) pairs of an ``images/`` + ``labels/`` folder or of ``*_seg`` suffixes."""
    if (root / "images").is_dir():
        images = [p for p in list_files(root / "images") if is_nifti(p)]
        label_dir = root / "labels"
        labels = {p.name: p for p in list_files(label_dir) if is_nifti(p)} if label_dir.is_dir() else {}
        if labels:
            names = {p.name for p in images}
            orphan = sorted(set(labels) - names)
            if orphan:
                raise InvalidInputError("label file has no image of the same name in images/", path=labels[orphan[0]])
            for p in images:
                if p.name not in labels:
                    raise InvalidInputError("image has no label file of the same name in labels/", path=p)
        return [(p, labels.get(p.name)) for p in images]
    files = [p for p in list_files(root) if is_nifti(p)]
    by_stem = {nifti_stem(p): p for p in files}
    masks: dict[str, Path] = {}
    for stem, p in by_stem.items():
        for suffix in MASK_SUFFIXES:
            if stem.endswith(suffix):
                base = stem[: -len(suffix)]
                if base not in by_stem:
                    raise InvalidInputError(f"mask has no image named {base}.nii(.gz)", path=p)
                masks[base] = p
    mask_files = set(masks.values())
    images = [p for p in files if p not in mask_files]
    if masks:
        for p in images:
            if nifti_stem(p) not in masks:
                raise InvalidInputError("image has no *_seg/*_mask partner while others have", path=p)
    return [(p, masks.get(nifti_stem(p))) for p in images]


def _volume_build(samples, classes, opts, facts, norm, modality, fmt, source_path) -> DatasetBuild:
    prov = Provenance(
        modality=modality,
        normalisation=norm,
        source={"format": fmt, "path": str(source_path)},
        details={**facts.details(), "stored_orientation": "RAS" if fmt == "nifti" else "slice,row,column"},
    )
    return assemble(samples, classes, opts, prov)


def _import_nifti(root: Path, opts: ImportOptions, source_path: Path) -> DatasetBuild:
    pairs = nifti_pairs(root)
    if not pairs:
        raise InvalidInputError("no NIfTI volumes found", path=root)
    modality = opts.modality or "other"
    norm = volume_normalisation(opts, modality)
    facts = VolumeFacts()
    classes = [opts.class_name]
    samples = load_nifti_pairs(pairs, root=root, label=0, opts=opts, norm=norm, facts=facts)
    return _volume_build(samples, classes, opts, facts, norm, modality, "nifti", source_path)


def _import_dicom(root: Path, opts: ImportOptions, source_path: Path) -> DatasetBuild:
    files = [p for p in list_files(root, recursive=True) if is_dicom(p)]
    if not files:
        raise InvalidInputError("no DICOM files found", path=root)
    facts = VolumeFacts()
    holder: dict = {}
    samples = load_dicom_folder(files, root=root, where=root, label=0, opts=opts, facts=facts, norm_holder=holder)
    opts.report(len(files), len(files))
    return _volume_build(samples, [opts.class_name], opts, facts, holder["normalisation"], holder["modality"],
                         "dicom", source_path)


# --- class folders and labels.csv -----------------------------------------------------------


def _import_imagefolder(root: Path, opts: ImportOptions, source_path: Path) -> DatasetBuild:
    dirs = subfolders(root)
    if not dirs:  # a flat folder of pictures: one class
        files = [p for p in list_files(root) if is_picture(p)]
        return _pictures_build(files, [0] * len(files), [opts.class_name], root, opts, source_path, "imagefolder")
    found = [d.name for d in dirs]
    classes = resolve_classes(found, opts.classes, where=root)
    per_class: list[tuple[Path, int, list[Path]]] = []
    for d in dirs:
        files = list_files(d, recursive=True)
        usable = [p for p in files if is_picture(p) or is_nifti(p) or is_dicom(p)]
        if not usable:
            raise InvalidInputError(f"class folder {d.name!r} contains no images", path=d)
        per_class.append((d, classes.index(d.name), usable))
    kinds = {_kind(p) for _, _, files in per_class for p in files}
    if len(kinds) > 1:
        raise InvalidInputError(f"class folders mix {', '.join(sorted(kinds))} files; import one kind", path=root)
    kind = kinds.pop()
    if kind == "picture":
        files = [p for _, _, fs in per_class for p in fs]
        labels = [lab for _, lab, fs in per_class for _ in fs]
        return _pictures_build(files, labels, classes, root, opts, source_path, "imagefolder")
    facts = VolumeFacts()
    samples: list[LoadedSample] = []
    if kind == "nifti":
        modality = opts.modality or "other"
        norm = volume_normalisation(opts, modality)
        total = sum(len(fs) for _, _, fs in per_class)
        for d, lab, _ in per_class:
            pairs = nifti_pairs(d)
            samples += load_nifti_pairs(pairs, root=root, label=lab, opts=opts, norm=norm, facts=facts,
                                        done=len(samples), total=total)
    else:
        holder: dict = {}
        for d, lab, fs in per_class:
            samples += load_dicom_folder(fs, root=root, where=d, label=lab, opts=opts, facts=facts, norm_holder=holder)
        norm, modality = holder["normalisation"], holder["modality"]
    return _volume_build(samples, classes, opts, facts, norm, modality, f"imagefolder-{kind}", source_path)


def _kind(p: Path) -> str:
    return "picture" if is_picture(p) else "nifti" if is_nifti(p) else "dicom"


def _pictures_build(
    files: list[Path], labels: list[int], classes: list[str], root: Path, opts: ImportOptions,
    source_path: Path, fmt: str,
) -> DatasetBuild:
    if not files:
        raise InvalidInputError("no pictures found", path=root)
    state: dict = {}
    samples = load_pictures(files, root=root, labels=labels, opts=opts, state=state)
    opts.report(len(files), len(files))
    channels = unify_channels(samples)
    prov = Provenance(
        modality=opts.modality or "other",
        normalisation=state["normalisation"],
        source={"format": fmt, "path": str(source_path)},
        details={"pixel_dtype": state["dtype"], "channels": channels,
                 "resized_to": list(opts.size) if opts.size else None},
    )
    return assemble(samples, classes, opts, prov)


def _import_csv(root: Path, opts: ImportOptions, source_path: Path) -> DatasetBuild:
    """``labels.csv`` with columns ``file,label``; a label is a class name or a class index."""
    csv_path = root / "labels.csv"
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"cannot be read as CSV ({exc})", path=csv_path) from exc
    if "file" not in header or "label" not in header:
        raise InvalidInputError(f"needs columns file,label; has {','.join(header)}", path=csv_path)
    if not rows:
        raise InvalidInputError("lists no files", path=csv_path)
    files: list[Path] = []
    raw_labels: list[str] = []
    for n, r in enumerate(rows, start=2):  # row 1 is the header
        rel = r["file"]
        pure = PurePosixPath(rel.replace("\\", "/"))
        if not rel or pure.is_absolute() or ".." in pure.parts:
            raise InvalidInputError(f"row {n}: file {rel!r} must be a path inside the folder", path=csv_path)
        p = root.joinpath(*pure.parts)
        if not p.is_file():
            raise InvalidInputError(f"row {n}: file {rel!r} does not exist", path=csv_path)
        if not r["label"]:
            raise InvalidInputError(f"row {n}: empty label for {rel!r}", path=csv_path)
        files.append(p)
        raw_labels.append(r["label"])
    if opts.classes:
        classes = list(opts.classes)
        labels = []
        for n, lab in enumerate(raw_labels, start=2):
            if lab in classes:
                labels.append(classes.index(lab))
            elif lab.isdigit() and int(lab) < len(classes):
                labels.append(int(lab))
            else:
                raise InvalidInputError(
                    f"row {n}: unknown label {lab!r}; known: {', '.join(classes)}", path=csv_path
                )
    elif all(lab.isdigit() for lab in raw_labels):
        classes = [f"label_{i}" for i in range(max(int(v) for v in raw_labels) + 1)]
        labels = [int(v) for v in raw_labels]
    else:
        classes = sorted(set(raw_labels))
        labels = [classes.index(v) for v in raw_labels]
    kinds = {_kind(p) if (is_picture(p) or is_nifti(p)) else "other" for p in files}
    if kinds == {"picture"}:
        return _pictures_build(files, labels, classes, root, opts, source_path, "csv")
    if kinds == {"nifti"}:
        modality = opts.modality or "other"
        norm = volume_normalisation(opts, modality)
        facts = VolumeFacts()
        samples: list[LoadedSample] = []
        for p, lab in zip(files, labels):
            samples += load_nifti_pairs([(p, None)], root=root, label=lab, opts=opts, norm=norm, facts=facts,
                                        done=len(samples), total=len(files))
        return _volume_build(samples, classes, opts, facts, norm, modality, "csv-nifti", source_path)
    raise InvalidInputError("files must all be pictures (PNG/JPEG) or all NIfTI volumes", path=csv_path)
