"""2D pictures (PNG, JPEG, BMP, TIFF): one file, one sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthcohort.core.atomic import sha256_file
from synthcohort.core.errors import InvalidInputError
from synthcohort.imaging.normalisation import apply_normalisation, default_normalisation
from synthcohort.imaging.readers import read_picture
from synthcohort.imaging.resizing import check_size, resize_image
from synthcohort.store.importers.assembly import ImportOptions, LoadedSample


def load_pictures(
    files: list[Path], *, root: Path, labels: list[int], opts: ImportOptions, state: dict,
    done: int = 0, total: int | None = None,
) -> list[LoadedSample]:
    """Read, normalise and (if a size is given) resize pictures; ``state`` carries the
    normalisation chosen from the first file so every file of the import gets the same one."""
    size = check_size(opts.size, 2) if opts.size else None
    total = total or len(files)
    out: list[LoadedSample] = []
    for k, (path, label) in enumerate(zip(files, labels)):
        raw, dtype = read_picture(path)
        if "dtype" not in state:
            state["dtype"] = str(dtype)
            state["normalisation"] = opts.normalisation or default_normalisation(
                opts.modality or "other", dtype, volumetric=False
            )
        elif str(dtype) != state["dtype"] and opts.normalisation is None:
            raise InvalidInputError(
                f"pixels are {dtype} but earlier files are {state['dtype']}; pass --normalise to scale them alike",
                path=path,
            )
        image = apply_normalisation(raw, state["normalisation"])
        if size is not None:
            image = resize_image(image, size)
        rel = path.relative_to(root).as_posix()
        out.append(
            LoadedSample(sample_id=rel, label=label, image=image, source_file=rel,
                         source_sha256=sha256_file(path), where=path)
        )
        if (done + k + 1) % 100 == 0:
            opts.report(done + k + 1, total)
    return out


def unify_channels(samples: list[LoadedSample]) -> int:
    """Grey and RGB mixed in one import: grey pictures become RGB (C = 3). Returns C."""
    channels = {s.image.shape[0] for s in samples}
    if channels == {1, 3}:
        for s in samples:
            if s.image.shape[0] == 1:
                s.image = np.repeat(s.image, 3, axis=0)
        return 3
    return channels.pop() if channels else 1
