"""Write a synthetic image as a DICOM series that no one can mistake for a real patient.

Why these choices:

- Secondary Capture Image Storage with Conversion Type ``SYN`` (synthetic image), ImageType
  ``DERIVED\\SECONDARY``, BurnedInAnnotation ``NO``, PatientName ``SYNTHETIC^COHORT`` and a
  SeriesDescription that starts with ``SYNTHETIC``: a PACS, a viewer or a de-identification
  audit sees at once what the file is. The modality-specific IODs (CT/MR Image Storage) demand
  acquisition attributes (kVp, TR/TE...) that a generator has no honest value for.
- The Image Plane attributes (position, orientation, pixel spacing, slice thickness) are added
  to every instance, so that series readers (pydicom, ITK, MONAI's ``PydicomReader``) rebuild
  the volume and its spacing from them.
- Pixels are 16-bit unsigned with RescaleSlope/RescaleIntercept, so a [0, 1] intensity (or a
  physical range, e.g. Hounsfield units, given by ``value_range``) survives within
  ``(hi - lo) / 65535``. RGB 2D images (fundus) are 8-bit RGB without rescale (DICOM defines
  none for colour).
- UIDs are new per export; with a ``seed`` they are derived from it (pydicom ``generate_uid``
  with entropy sources), so rerunning an export gives byte-identical files.

Layout convention: arrays are channel first, 2D ``(C, H, W)`` and 3D ``(C, D, H, W)`` (see
:mod:`imaging`); a volume's slices run along D, rows along H, columns along W, and ``spacing``
is given in the same axis order ((D, H, W) or (H, W)), as for :func:`imaging.writers.write_nifti`.
:func:`imaging.readers.read_dicom_series` reads such a series back.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.version import __version__

SYNTHETIC_PATIENT_NAME = "SYNTHETIC^COHORT"
SERIES_DESCRIPTION_PREFIX = "SYNTHETIC — synthcohort"

# Dataset modality names (as users and the store spell them) → DICOM Modality (CS, PS3.3 C.7.3.1.1.1).
_MODALITY_CODES = {
    "ct": "CT",
    "mr": "MR",
    "mri": "MR",
    "xr": "DX",
    "xray": "DX",
    "x-ray": "DX",
    "dx": "DX",
    "cr": "CR",
    "us": "US",
    "ultrasound": "US",
    "fundus": "OP",
    "op": "OP",
    "pet": "PT",
    "pt": "PT",
    "other": "OT",
}


def modality_code(modality: str | None) -> str:
    """The DICOM Modality for a dataset modality name; ``OT`` (other) when unknown."""
    if not modality:
        return "OT"
    return _MODALITY_CODES.get(str(modality).strip().lower(), "OT")


def _uid(seed: int | None, *names: object) -> str:
    """A fresh UID, or a reproducible one derived from the seed and a purpose."""
    if seed is None:
        return str(generate_uid())
    return str(generate_uid(entropy_srcs=["synthcohort", str(int(seed)), *map(str, names)]))


def _ds(value: float) -> str:
    """A decimal string (DS) of at most 16 characters, as the standard allows."""
    return format_number_as_ds(float(value))


def _planes(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (planes, spatial_dims): planes is (D, H, W) grey or (1, H, W, 3) RGB."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        return arr[None], 2
    if arr.ndim == 3:  # (C, H, W)
        if arr.shape[0] == 1:
            return arr, 2
        if arr.shape[0] == 3:
            return np.moveaxis(arr, 0, -1)[None], 2
        raise InvalidInputError(f"a 2D image for DICOM needs 1 or 3 channels, got {arr.shape[0]}", field="image")
    if arr.ndim == 4:  # (C, D, H, W)
        if arr.shape[0] != 1:
            raise InvalidInputError(
                f"a 3D volume for DICOM needs 1 channel, got {arr.shape[0]}", field="image"
            )
        return arr[0], 3
    raise InvalidInputError(
        f"expected (C, H, W) or (C, D, H, W), got shape {arr.shape}", field="image"
    )


def encode_dicom_series(
    image: np.ndarray,
    *,
    sample_id: str,
    model_id: str,
    spacing: Sequence[float] | None = None,
    modality: str | None = None,
    seed: int | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    series_number: int = 1,
    series_label: str = "",
) -> list[bytes]:
    """Encode one synthetic image as DICOM Part 10 files (one per slice), in slice order.

    ``image`` is in [0, 1] (values outside are clipped). ``value_range`` = (lo, hi) is what
    0 and 1 mean physically; the rescaled pixel value is ``lo + x * (hi - lo)``.
    ``series_label`` (e.g. "mask") is appended to the SeriesDescription; give a mask the same
    ``sample_id`` and another ``series_number`` so it lands in the same study as its image.
    """
    planes, spatial_dims = _planes(image)
    rgb = planes.ndim == 4
    n_spatial = spatial_dims
    if spacing is None:
        spacing = (1.0,) * n_spatial
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != n_spatial or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InvalidInputError(
            f"needs {n_spatial} positive values for a {n_spatial}D image, got {spacing}", field="spacing"
        )
    slice_mm = spacing[0] if n_spatial == 3 else 1.0
    row_mm, col_mm = spacing[-2], spacing[-1]
    lo, hi = map(float, value_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise InvalidInputError(f"needs lo < hi, got {value_range}", field="value_range")
    if not sample_id or len(sample_id) > 64:
        raise InvalidInputError("must be 1 to 64 characters (DICOM PatientID)", field="sample_id")

    code = modality_code(modality)
    study_uid = _uid(seed, model_id, sample_id, "study")
    series_uid = _uid(seed, model_id, sample_id, "series", series_number)
    frame_uid = _uid(seed, model_id, sample_id, "frame-of-reference")
    files: list[bytes] = []
    for k, plane in enumerate(planes):
        sop_uid = _uid(seed, model_id, sample_id, "instance", series_number, k)
        ds = _instance(
            study_uid=study_uid, series_uid=series_uid, frame_uid=frame_uid, sop_uid=sop_uid,
            sample_id=sample_id, model_id=model_id, seed=seed, modality=code,
            series_number=series_number, instance_number=k + 1, series_label=series_label,
        )
        # Image Plane: slices stacked along +z, rows along +y, columns along +x.
        ds.ImagePositionPatient = [_ds(0.0), _ds(0.0), _ds(k * slice_mm)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = [_ds(row_mm), _ds(col_mm)]
        ds.SliceThickness = _ds(slice_mm)
        if n_spatial == 3:
            ds.SpacingBetweenSlices = _ds(slice_mm)
        ds.SliceLocation = _ds(k * slice_mm)
        ds.Rows, ds.Columns = int(plane.shape[0]), int(plane.shape[1])
        if rgb:
            pixels = np.clip(np.rint(np.clip(plane, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        else:
            pixels = np.rint(np.clip(plane, 0.0, 1.0) * 65535.0).astype("<u2")
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.RescaleIntercept = _ds(lo)
            ds.RescaleSlope = _ds((hi - lo) / 65535.0)
            ds.RescaleType = "HU" if code == "CT" and value_range != (0.0, 1.0) else "US"
            ds.WindowCenter = _ds((lo + hi) / 2.0)
            ds.WindowWidth = _ds(hi - lo)
        ds.PixelRepresentation = 0
        data = pixels.tobytes()
        ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
        ds["PixelData"].VR = "OB" if rgb else "OW"
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        files.append(buf.getvalue())
    return files


def _instance(
    *, study_uid: str, series_uid: str, frame_uid: str, sop_uid: str, sample_id: str,
    model_id: str, seed: int | None, modality: str, series_number: int, instance_number: int,
    series_label: str = "",
) -> Dataset:
    """The attributes shared by every instance, none of which describes a person."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"SYNTHCOHORT{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the series description has an em dash
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["DERIVED", "SECONDARY"]
    # Patient: nobody. Type 2 attributes stay empty rather than invented.
    ds.PatientName = SYNTHETIC_PATIENT_NAME
    ds.PatientID = sample_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthcohort synthetic image: generated, no patient data"
    # Study / series. Dates stay empty (Type 2) so that a seeded export is byte-identical.
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC cohort (synthcohort)"
    ds.SeriesDescription = " ".join(filter(None, (SERIES_DESCRIPTION_PREFIX, model_id, series_label)))[:64]
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    # Equipment: Secondary Capture, synthetic conversion.
    ds.ConversionType = "SYN"
    ds.Manufacturer = "synthcohort"
    ds.SoftwareVersions = __version__
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.DerivationDescription = f"Generated by synthcohort model {model_id}"[:1024]
    seed_text = "unseeded" if seed is None else f"seed {seed}"
    ds.ImageComments = (
        f"SYNTHETIC image generated by synthcohort (model {model_id}, sample {sample_id}, {seed_text}). "
        "Not a real patient; not for diagnostic use."
    )
    return ds
