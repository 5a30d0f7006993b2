"""Small PNG previews of sample images for the review UI: 2D images as they are, 3D volumes
by their middle slice along the first (depth) axis, scaled so the longer edge is ``edge``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from synthcohort.imaging.writers import to_uint8

from synthcohort.core.errors import InvalidInputError

DEFAULT_EDGE = 128


def _load(path: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) float image in [0, 1]."""
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        vol = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
        if vol.ndim == 4:  # (D, H, W, C): channel last on disk
            vol = vol[..., 0]
        if vol.ndim != 3:
            raise InvalidInputError(f"expected a 3D volume, got shape {vol.shape}", path=path.name)
        return vol[vol.shape[0] // 2]
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB") if im.mode not in ("L", "I;16", "I", "F") else im
        arr = np.asarray(im, dtype=np.float32)
    return arr / (65535.0 if arr.max() > 255 else 255.0)


def render_thumbnail(path: str | Path, edge: int = DEFAULT_EDGE) -> bytes:
    """PNG bytes of the image at ``path``; small images are enlarged without smoothing so
    28-pixel MedMNIST samples stay readable, large ones shrunk with anti-aliasing."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("sample image is missing", path=path.name)
    try:
        arr = _load(path)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"cannot be read ({type(exc).__name__}: {exc})", path=path.name) from exc
    im = Image.fromarray(to_uint8(arr))
    scale = edge / max(im.size)
    size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    im = im.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
