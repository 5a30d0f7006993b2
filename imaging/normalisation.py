"""Intensity normalisation to [0, 1]: how raw scanner values become the arrays we store.

Every method is described by a small dict (``{"method": ..., parameters}``) that is recorded in
the dataset metadata, so a reader can tell exactly how a stored value maps back to the source.

Methods
- ``divide``: ``x / divisor`` (8-bit photos, X-ray, ultrasound, MedMNIST: divisor 255).
- ``window``: a CT display window of width W and level L on Hounsfield units,
  ``clip((x - (L - W/2)) / W, 0, 1)``; soft tissue is W400/L40.
- ``percentile``: per-volume scaling of the ``low``-th..``high``-th percentile to [0, 1]
  (MR has no absolute unit, so each volume is scaled on its own), values outside are clipped.
- ``minmax``: per-image (min, max) → (0, 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthcohort.core.errors import InvalidInputError

# Named CT windows (width, level) in HU, as used on radiology workstations.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft-tissue": (400.0, 40.0),
    "brain": (80.0, 40.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "liver": (150.0, 30.0),
}

Normalisation = dict[str, Any]


def parse_normalisation(spec: str) -> Normalisation:
    """Parse a user's ``--normalise`` value.

    Accepted: ``divide:255``, ``window:400,40`` or ``window:soft-tissue`` (also ``lung``,
    ``bone``, ``brain``, ``liver``), ``percentile`` / ``percentile:1,99``, ``minmax``.
    """
    text = spec.strip().lower()
    method, _, arg = text.partition(":")
    try:
        if method == "divide":
            divisor = float(arg) if arg else 255.0
            if divisor <= 0:
                raise ValueError("divisor must be positive")
            return {"method": "divide", "divisor": divisor}
        if method == "window":
            if arg in CT_WINDOWS or not arg:
                name = arg or "soft-tissue"
                width, level = CT_WINDOWS[name]
                return {"method": "window", "name": name, "width": width, "level": level}
            width, level = (float(v) for v in arg.split(","))
            if width <= 0:
                raise ValueError("window width must be positive")
            return {"method": "window", "width": width, "level": level}
        if method == "percentile":
            low, high = (float(v) for v in arg.split(",")) if arg else (1.0, 99.0)
            if not 0 <= low < high <= 100:
                raise ValueError("need 0 <= low < high <= 100")
            return {"method": "percentile", "low": low, "high": high, "per": "volume"}
        if method == "minmax":
            return {"method": "minmax", "per": "image"}
    except ValueError as exc:
        raise InvalidInputError(f"cannot parse {spec!r} ({exc})", field="normalise") from exc
    raise InvalidInputError(
        f"unknown method {spec!r}; use divide:255, window:W,L, window:soft-tissue, "
        "percentile:1,99 or minmax",
        field="normalise",
    )


def default_normalisation(modality: str, dtype: np.dtype, *, volumetric: bool) -> Normalisation:
    """The method a modality gets when the user names none.

    CT volumes are in HU → soft-tissue window; MR/other scanner volumes → percentiles per
    volume; 8-bit pictures → /255; 16-bit pictures → /65535.
    """
    if modality == "CT" and volumetric:
        return parse_normalisation("window:soft-tissue")
    if np.dtype(dtype) == np.uint8:
        return {"method": "divide", "divisor": 255.0}
    if np.dtype(dtype) == np.uint16 and not volumetric:
        return {"method": "divide", "divisor": 65535.0}
    if volumetric:
        return parse_normalisation("percentile")
    return {"method": "minmax", "per": "image"}


def apply_normalisation(x: np.ndarray, norm: Normalisation) -> np.ndarray:
    """Map one image/volume of raw values to float32 in [0, 1] as ``norm`` describes."""
    x = np.asarray(x, dtype=np.float32)
    method = norm["method"]
    if method == "divide":
        y = x / np.float32(norm["divisor"])
    elif method == "window":
        low = norm["level"] - norm["width"] / 2.0
        y = (x - np.float32(low)) / np.float32(norm["width"])
    elif method == "percentile":
        lo, hi = np.percentile(x, [norm["low"], norm["high"]])
        y = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    elif method == "minmax":
        lo, hi = float(x.min()), float(x.max())
        y = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    else:  # pragma: no cover - parse_normalisation guards this
        raise InvalidInputError(f"unknown method {method!r}", field="normalise")
    return np.clip(y, 0.0, 1.0).astype(np.float32)
