"""Read medical image files into raw numpy arrays, naming the file in every error.

Readers return raw values (uint8 pixels, HU, MR signal); :mod:`imaging.normalisation` maps them
to [0, 1] and :mod:`imaging.resizing` to the target grid. Arrays come back channel first.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError

from synthcohort.core.errors import InvalidInputError, TooLargeError
from synthcohort.core.settings import get_settings
from synthcohort.imaging.header_checks import check_dicom_header, check_nifti_header
from synthcohort.imaging.npz_headers import check_npz

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
MEDMNIST_SPLITS = ("train", "val", "test")


def is_picture(path: Path) -> bool:
    return path.suffix.lower() in PICTURE_SUFFIXES


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]


def is_dicom(path: Path) -> bool:
    """A DICOM Part 10 image file (``DICM`` after the 128-byte preamble), or named ``*.dcm``;
    a ``DICOMDIR`` index is not an image."""
    if path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def check_file_size(path: Path) -> int:
    """Refuse a file over ``max_file_bytes`` before anything reads it."""
    size = path.stat().st_size
    limit = get_settings().max_file_bytes
    if size > limit:
        raise TooLargeError(f"file is {size} bytes, over the limit of {limit} (max_file_bytes)", path=path)
    return size


def _unreadable(path: Path, exc: BaseException) -> InvalidInputError:
    return InvalidInputError(f"cannot be read, corrupt or truncated ({type(exc).__name__}: {exc})", path=path)


# --- MedMNIST npz ----------------------------------------------------------------------------


@dataclass
class MedmnistSplits:
    """Raw MedMNIST arrays: images (N, H, W), (N, H, W, 3) or (N, D, H, W); labels (N,)."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    @property
    def layout(self) -> str:
        """"grey" (N, H, W), "rgb" (N, H, W, 3) or "volume" (N, D, H, W)."""
        shape = self.images["train"].shape[1:]
        if len(shape) == 3 and shape[-1] == 3:
            return "rgb"
        return "grey" if len(shape) == 2 else "volume"

    def channel_first(self, split: str) -> np.ndarray:
        """The split's images as (N, C, *spatial), raw values."""
        x = self.images[split]
        return np.moveaxis(x, -1, 1) if self.layout == "rgb" else x[:, None]

    def unit_float(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every split as (images (N, C, *spatial) float32 in [0, 1], labels (N,) int64): the
        arrays the generators' and validation stage's array APIs take. MedMNIST stores uint8."""
        return {s: (self.channel_first(s).astype(np.float32) / 255.0, self.labels[s]) for s in self.images}


def read_medmnist(path: Path) -> MedmnistSplits:
    """Read ``{train,val,test}_{images,labels}`` from a MedMNIST ``.npz`` (no pickles); the
    arrays' sizes are checked from their headers first (``imaging.npz_headers``)."""
    check_file_size(path)
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise InvalidInputError("is not a .npz file (no zip signature): corrupt or another format", path=path)
    check_npz(path)
    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            for split in MEDMNIST_SPLITS:
                ik, lk = f"{split}_images", f"{split}_labels"
                if ik not in keys and lk not in keys:
                    continue
                if ik not in keys or lk not in keys:
                    raise InvalidInputError(f"has {ik if ik in keys else lk} but not its partner", path=path)
                images[split] = np.asarray(z[ik])
                labels[split] = np.asarray(z[lk])
    except InvalidInputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _unreadable(path, exc) from exc
    if "train" not in images:
        raise InvalidInputError(
            "is not a MedMNIST npz: no train_images/train_labels arrays", path=path
        )
    for split in images:
        x, y = images[split], labels[split]
        y = y.reshape(len(y), -1) if y.ndim else y
        if y.ndim != 2 or y.shape[1] != 1:
            raise InvalidInputError(
                f"{split}_labels has shape {labels[split].shape}; only single-label (N,) or (N, 1) "
                "classification sets are supported",
                path=path,
            )
        if x.ndim not in (3, 4) or len(x) != len(y):
            raise InvalidInputError(
                f"{split}_images has shape {x.shape} for {len(y)} labels; expected (N, H, W), "
                "(N, H, W, 3) or (N, D, H, W)",
                path=path,
            )
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise InvalidInputError(f"{split}_labels are not non-negative integers", path=path)
        labels[split] = y[:, 0].astype(np.int64)
    shapes = {images[s].shape[1:] for s in images}
    if len(shapes) != 1:
        raise InvalidInputError(f"splits have different image shapes {sorted(shapes)}", path=path)
    return MedmnistSplits(images, labels)


# --- pictures (PNG / JPEG ...) ---------------------------------------------------------------


def read_picture(path: Path) -> tuple[np.ndarray, np.dtype]:
    """Read a 2D picture as (C, H, W) raw values (C = 1 grey or 3 RGB) and its pixel dtype."""

    check_file_size(path)
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so a truncated file fails here and is named
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit, 32-bit int or float pixels
                arr = np.asarray(im)
                arr = arr.astype(np.uint16 if im.mode.startswith("I;16") else arr.dtype.newbyteorder("="))
            elif im.mode in ("L", "1", "P", "LA") and (im.mode != "P" or _palette_is_grey(im)):
                arr = np.asarray(im.convert("L"))
            else:
                arr = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise _unreadable(path, exc) from exc
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return np.ascontiguousarray(arr), arr.dtype


def _palette_is_grey(im) -> bool:
    rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


# --- NIfTI -----------------------------------------------------------------------------------


@dataclass
class Volume:
    """A raw 3D volume (D, H, W) with its voxel spacing (same axis order) in mm."""

    data: np.ndarray
    spacing: tuple[float, float, float]
    orientation: str  # axis codes of the source, e.g. "RAS" or "LPS"
    dtype: np.dtype
    extra: dict = field(default_factory=dict)


def read_nifti(path: Path, *, reorient: bool = True) -> Volume:
    """Read a 3D NIfTI volume, reoriented to the closest canonical (RAS) axes.

    Orientation codes come from the affine (``nibabel.aff2axcodes``); spacing from the header
    zooms (after reorientation, so it matches the array axes).
    """

    check_file_size(path)
    check_nifti_header(path)
    try:
        img = nib.load(str(path))
        ornt = nib.orientations.io_orientation(img.affine)
        source_codes = "".join(str(c) for c in nib.orientations.ornt2axcodes(ornt))
        if reorient and source_codes != "RAS":
            img = nib.as_closest_canonical(img)
        dtype = img.get_data_dtype()
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types (ImageFileError, EOFError, zlib.error...)
        raise _unreadable(path, exc) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidInputError(f"has shape {data.shape}; only 3D volumes are supported", path=path)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if any(not np.isfinite(z) or z <= 0 for z in zooms):
        raise InvalidInputError(f"header has invalid voxel sizes {zooms}", path=path)
    if not np.isfinite(data).all():
        raise InvalidInputError("contains NaN or infinite voxels", path=path)
    return Volume(np.ascontiguousarray(data), zooms, source_codes, np.dtype(dtype))


# --- DICOM -----------------------------------------------------------------------------------


@dataclass
class DicomSeries:
    """One series stacked along its slice normal: data (D, H, W) in modality units (HU for CT)."""

    series_uid: str
    modality: str
    files: list[Path]
    data: np.ndarray
    spacing: tuple[float, float, float]  # (between slices from positions, row spacing, column spacing)
    slice_thickness: float | None
    orientation: str


def group_dicom_series(files: list[Path]) -> dict[str, list[tuple[Path, object]]]:
    """Read headers (no pixels) and group files by SeriesInstanceUID."""

    series: dict[str, list[tuple[Path, object]]] = {}
    for path in files:
        check_file_size(path)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError) as exc:
            raise _unreadable(path, exc) from exc
        uid = getattr(ds, "SeriesInstanceUID", None)
        if uid is None:
            raise InvalidInputError("has no SeriesInstanceUID", path=path)
        series.setdefault(str(uid), []).append((path, ds))
    return series


def _dicom_axis_codes(row: np.ndarray, col: np.ndarray, normal: np.ndarray) -> str:
    """Patient-axis letters (LPS frame) each array axis (slice, row, column) points to."""
    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    codes = []
    for v in (normal, col, row):  # array axes: D along normal, H along column dir, W along row dir
        k = int(np.argmax(np.abs(v)))
        codes.append(letters[k][1] if v[k] > 0 else letters[k][0])
    return "".join(codes)


def read_dicom_series(uid: str, members: list[tuple[Path, object]], *, where: Path) -> DicomSeries:
    """Stack one series' slices in order along the slice normal.

    Order is the projection of ImagePositionPatient on the normal
    (row direction × column direction of ImageOrientationPatient); slice spacing is the median
    step between positions; a step over 1.5× the median is a missing slice.
    """

    first = members[0][1]
    try:
        iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
        row, col = iop[:3], iop[3:]
        normal = np.cross(row, col)
        pixel_spacing = tuple(float(v) for v in first.PixelSpacing)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"series {uid} lacks ImageOrientationPatient/PixelSpacing ({exc})", path=members[0][0]
        ) from exc
    positions = []
    for path, ds in members:
        other = np.asarray([float(v) for v in getattr(ds, "ImageOrientationPatient", iop)])
        if not np.allclose(other, iop, atol=1e-3):
            raise InvalidInputError(f"series {uid}: slice orientation differs from the others", path=path)
        try:
            ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
        except (AttributeError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"series {uid}: slice has no ImagePositionPatient", path=path) from exc
        positions.append(float(np.dot(normal, ipp)))
    order = np.argsort(positions, kind="stable")
    members = [members[i] for i in order]
    pos = np.asarray(positions)[order]
    if len(pos) > 1:
        steps = np.diff(pos)
        if (steps < 1e-3).any():
            dup = members[int(np.argmin(steps)) + 1][0]
            raise InvalidInputError(f"series {uid}: two slices at the same position", path=dup)
        median = float(np.median(steps))
        gaps = np.nonzero(steps > 1.5 * median)[0]
        if len(gaps):
            i = int(gaps[0])
            raise InvalidInputError(
                f"series {uid} has missing slices: gap of {steps[i]:.3g} mm between positions "
                f"{pos[i]:.4g} and {pos[i + 1]:.4g} (median step {median:.3g} mm)",
                path=where,
            )
        step = round(median, 4)
    else:
        step = float(getattr(first, "SliceThickness", 1.0) or 1.0)
    slices = []
    for path, _ in members:
        check_dicom_header(path)
        try:
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array.astype(np.float32)
        except Exception as exc:  # pydicom pixel handlers raise many types on truncated data
            raise _unreadable(path, exc) from exc
        if arr.ndim != 2:
            raise InvalidInputError(f"pixel data has shape {arr.shape}; expected one 2D frame", path=path)
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        slices.append(arr * np.float32(slope) + np.float32(intercept))
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise InvalidInputError(f"series {uid}: slices have different sizes {sorted(shapes)}", path=where)
    thickness = getattr(first, "SliceThickness", None)
    return DicomSeries(
        series_uid=uid,
        modality=str(getattr(first, "Modality", "OT")),
        files=[p for p, _ in members],
        data=np.stack(slices),
        spacing=(step, round(pixel_spacing[0], 6), round(pixel_spacing[1], 6)),
        slice_thickness=float(thickness) if thickness not in (None, "") else None,
        orientation=_dicom_axis_codes(row, col, normal),
    )
