"""MedMNIST ``.npz`` files (Yang et al., "MedMNIST v2", Scientific Data 10, 41, 2023).

The official train/val/test split is kept. The npz stores no class names, so they come from
``--classes``, else from the table of known subsets below (by file stem), else ``label_<i>``.
"""

from __future__ import annotations

from pathlib import Path

from synthcohort.core.atomic import sha256_file
from synthcohort.core.errors import InvalidInputError
from synthcohort.imaging.normalisation import apply_normalisation, default_normalisation
from synthcohort.imaging.readers import read_medmnist
from synthcohort.imaging.resizing import check_size, resize_image
from synthcohort.store.datasets import DatasetBuild
from synthcohort.store.importers.assembly import (
    ImportOptions,
    LoadedSample,
    Provenance,
    assemble,
)

# file-stem prefix → (class names by label, modality); from the MedMNIST v2 paper's table.
KNOWN_SUBSETS: dict[str, tuple[list[str], str]] = {
    "breastmnist": (["malignant", "normal_benign"], "US"),
    "pneumoniamnist": (["normal", "pneumonia"], "XR"),
    "adrenalmnist3d": (["normal", "hyperplasia"], "CT"),
}


def _known(stem: str) -> tuple[list[str], str] | None:
    for prefix in sorted(KNOWN_SUBSETS, key=len, reverse=True):
        if stem.lower().startswith(prefix):
            return KNOWN_SUBSETS[prefix]
    return None


def import_medmnist(path: Path, opts: ImportOptions) -> DatasetBuild:
    raw = read_medmnist(path)
    sha = sha256_file(path)
    n_labels = int(max(int(y.max()) for y in raw.labels.values() if len(y))) + 1
    known = _known(path.stem)
    if opts.classes:
        if len(opts.classes) < n_labels:
            raise InvalidInputError(
                f"{len(opts.classes)} names given but {path.name} has labels 0..{n_labels - 1}", field="classes"
            )
        classes = list(opts.classes)
    elif known and len(known[0]) >= n_labels:
        classes = list(known[0])
    else:
        classes = [f"label_{i}" for i in range(n_labels)]
    modality = opts.modality or (known[1] if known else "other")

    sample_shape = raw.images["train"].shape[1:]
    layout = raw.layout
    spatial = 3 if layout == "volume" else 2
    size = check_size(opts.size, spatial) if opts.size else None
    norm = opts.normalisation or default_normalisation(modality, raw.images["train"].dtype, volumetric=False)

    samples: list[LoadedSample] = []
    splits: dict[str, list[int]] = {}
    total = sum(len(v) for v in raw.labels.values())
    for split in raw.images:
        x = raw.channel_first(split)
        if norm["method"] == "divide":  # the same for every image: do it at once
            x = apply_normalisation(x, norm)
        splits[split] = []
        for i in range(len(x)):
            img = x[i] if norm["method"] == "divide" else apply_normalisation(x[i], norm)
            if size is not None:
                img = resize_image(img, size)
            splits[split].append(len(samples))
            samples.append(
                LoadedSample(
                    sample_id=f"{split}-{i:06d}", label=int(raw.labels[split][i]), image=img,
                    source_file=f"{path.name}:{split}_images[{i}]", source_sha256=sha, where=path,
                )
            )
            if len(samples) % 500 == 0:
                opts.report(len(samples), total)
    opts.report(total, total)
    prov = Provenance(
        modality=modality,
        normalisation=norm,
        source={"format": "medmnist", "path": str(path), "sha256": sha},
        details={
            "source_size": [int(v) for v in (sample_shape[:2] if layout == "rgb" else sample_shape)],
            "class_names_from": "--classes" if opts.classes else ("known MedMNIST subset" if known else "label index"),
        },
    )
    return assemble(samples, classes, opts, prov, splits=splits, origin="official")
