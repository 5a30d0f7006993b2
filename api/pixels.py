"""Images as arrays for the review page's canvas: window/level, the three slices of a volume and
its mask overlay are drawn in the browser, so the page needs the intensities themselves, not a
PNG already mapped to 8 bits. uint16 keeps 16-bit CT/MR samples at full precision and halves
the bytes of float32; the payload is :class:`api.schemas.ImageArray`."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from synthcohort.core.errors import InvalidInputError, TooLargeError
from synthcohort.imaging.sample_files import read_sample_file

# 128³ voxels of one channel: about 5.6 MB of JSON. Generated volumes are far smaller (≤ 64³).
MAX_VOXELS = 128**3


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def image_array(image: np.ndarray, mask: np.ndarray | None = None,
                spacing: tuple[float, ...] | None = None) -> dict[str, Any]:
    """``ImageArray`` fields of a channel-first [0, 1] image ((C, H, W) or (C, D, H, W)); a 4th
    channel (alpha) is dropped, a mask is reduced to one channel of 0/1."""
    x = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if x.ndim not in (3, 4):
        raise InvalidInputError(f"expected (C, H, W) or (C, D, H, W), got shape {x.shape}", field="image")
    x = x[:3]
    if x.size > MAX_VOXELS * 3:
        raise TooLargeError(f"image of shape {x.shape} is too large to show ({x.size} values)", field="image")
    out: dict[str, Any] = {
        "shape": [int(n) for n in x.shape], "spatial_dims": x.ndim - 1, "dtype": "uint16",
        "data": _b64(np.clip(np.rint(x * 65535.0), 0, 65535).astype("<u2")),
        "mask": None, "spacing": [float(s) for s in spacing] if spacing else None,
    }
    if mask is not None:
        m = np.asarray(mask)
        m = m.reshape(-1, *x.shape[1:])[:1] if m.size % int(np.prod(x.shape[1:])) == 0 else None
        if m is None:
            raise InvalidInputError(f"mask of shape {np.shape(mask)} does not match the image {x.shape}", field="mask")
        out["mask"] = _b64((np.nan_to_num(m.astype(np.float32)) > 0.5).astype(np.uint8))
    return out


def sample_file_array(path: Path, mask_path: Path | None = None) -> dict[str, Any]:
    """``ImageArray`` fields of a sample file (and its mask file); errors name the file, never
    the server's path to it."""
    arrays = []
    for p in (path, mask_path):
        if p is None:
            arrays.append((None, None))
            continue
        try:
            arrays.append(read_sample_file(p))
        except InvalidInputError as exc:
            raise InvalidInputError(exc.reason, path=p.name) from exc
    (image, spacing), (mask, _) = arrays
    return image_array(image, mask, spacing)
