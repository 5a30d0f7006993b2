"""Three orthogonal slices of a volume, with its mask drawn as a contour: how a person reads a 3D
sample in the report. One middle slice (what ``imaging.sample_files.preview`` shows) hides
whether the structure is there in the other two directions, and whether it sits where the mask says.

Each panel is titled with its axis and slice position (``D 14/32``: slice 14 of 32 along the first
spatial axis), so a reader can find the same slice in a viewer. Slices pass through the centre of
the mask's foreground when there is one, else through the middle of the volume.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

AXES = ("D", "H", "W")  # the spatial axes of a (C, D, H, W) volume, in order
MASK_COLOUR = "#ff3b30"


@dataclass(frozen=True)
class VolumeRow:
    """One row of a picture: a volume (C, D, H, W) in [0, 1], its mask (1, D, H, W) or None, a label."""

    label: str
    volume: np.ndarray
    mask: np.ndarray | None = None


def slice_centre(shape: Sequence[int], mask: np.ndarray | None) -> tuple[int, int, int]:
    """(d, h, w): the rounded centre of the mask's foreground, or the middle of ``shape``."""
    if mask is not None:
        fg = np.argwhere(np.asarray(mask).reshape(tuple(shape)) > 0)
        if len(fg):
            return tuple(int(v) for v in np.rint(fg.mean(0)))  # type: ignore[return-value]
    return tuple(int(s) // 2 for s in shape)  # type: ignore[return-value]


def _slices(x: np.ndarray, at: tuple[int, int, int]) -> list[np.ndarray]:
    """The three planes of a (D, H, W) array through ``at``: across D, across H, across W."""
    d, h, w = at
    return [x[d], x[:, h], x[:, :, w]]


def orthogonal_views(rows: Sequence[VolumeRow], *, at: tuple[int, int, int] | None = None,
                     panel_px: int = 150) -> bytes:
    """A PNG with one row of three orthogonal slices per volume, the mask as a contour, each panel
    titled with its slice position. ``at`` fixes the slices for every row (a flagged sample and its
    nearest training volume are compared at the same place); by default each row is sliced
    through its own mask's centre."""
    matplotlib.use("Agg")
    dpi = 100
    fig, axes = plt.subplots(len(rows), 3, figsize=(3 * panel_px / dpi, len(rows) * (panel_px + 22) / dpi), dpi=dpi,
                             squeeze=False)
    for r, row in enumerate(rows):
        vol = np.nan_to_num(np.asarray(row.volume, dtype=np.float32))[0]
        mask = None if row.mask is None else np.asarray(row.mask)[0] > 0
        pos = at or slice_centre(vol.shape, mask)
        planes = _slices(vol, pos)
        outlines = _slices(mask, pos) if mask is not None else [None] * 3
        for c, (plane, outline) in enumerate(zip(planes, outlines)):
            ax = axes[r, c]
            ax.imshow(plane, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if outline is not None and outline.any() and not outline.all():
                ax.contour(outline.astype(np.float32), levels=[0.5], colors=MASK_COLOUR, linewidths=1.0)
            ax.set_title(f"{row.label}  {AXES[c]} {pos[c]}/{vol.shape[c]}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
