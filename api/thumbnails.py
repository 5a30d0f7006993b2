"""Small PNG previews of sample images for the review UI: 2D images as they are, 3D volumes
by their middle slice along the first (depth) axis, scaled so the longer edge is ``edge``."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from synthcohort.core.errors import InvalidInputError
from synthcohort.imaging.sample_files import preview, read_sample_file, to_uint8

DEFAULT_EDGE = 128


def render_thumbnail(path: str | Path, edge: int = DEFAULT_EDGE) -> bytes:
    """PNG bytes of the image at ``path``; small images are enlarged without smoothing so
    28-pixel MedMNIST samples stay readable, large ones shrunk with anti-aliasing."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("sample image is missing", path=path.name)
    try:
        arr, _ = read_sample_file(path)
    except InvalidInputError as exc:  # name the file, not the server's path to it
        raise InvalidInputError(exc.reason, path=path.name) from exc
    im = Image.fromarray(to_uint8(preview(arr)))
    scale = edge / max(im.size)
    size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    im = im.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
