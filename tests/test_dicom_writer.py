"""DICOM export: round trip through pydicom and the ingestion reader, synthetic markings, UIDs."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from synthcohort.core.errors import InvalidInputError
from synthcohort.imaging.dicom_writer import (
    encode_dicom_series,
    modality_code,
)
from synthcohort.imaging.readers import group_dicom_series, read_dicom_series

QUANTUM = 1.0 / 65535.0


def _volume(seed: int = 0, shape=(1, 6, 9, 7)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))  # no force=True: a valid Part 10 preamble is required


def test_volume_round_trips_through_the_ingestion_reader(tmp_path):
    vol = _volume()
    spacing = (2.5, 0.7, 0.8)
    files = encode_dicom_series(vol, sample_id="coh-1-000003", model_id="mdl-abc", spacing=spacing, modality="MR",
                                seed=11)
    paths = []
    for k, data in enumerate(files):  # as the archive export lays out a series folder
        paths.append(tmp_path / "series" / f"{k + 1:04d}.dcm")
        paths[-1].parent.mkdir(exist_ok=True)
        paths[-1].write_bytes(data)
    assert len(paths) == vol.shape[1]
    # Hand the files over shuffled: order must come from the positions, not the names.
    shuffled = [paths[i] for i in (3, 0, 5, 1, 4, 2)]
    groups = group_dicom_series(shuffled)
    assert len(groups) == 1  # one series per volume
    (uid, members), = groups.items()
    series = read_dicom_series(uid, members, where=tmp_path)
    assert series.data.shape == vol.shape[1:]
    assert np.abs(series.data - vol[0]).max() <= QUANTUM / 2 + 1e-7
    assert series.spacing == pytest.approx(spacing)
    assert series.modality == "MR"


def test_2d_image_round_trips_with_pydicom():
    img = _volume(1, (1, 13, 11))
    (data,) = encode_dicom_series(img, sample_id="s-1", model_id="mdl-x", spacing=(0.5, 0.25))
    ds = _read(data)
    assert (ds.Rows, ds.Columns) == (13, 11)
    back = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(back - img[0]).max() <= QUANTUM / 2 + 1e-7
    assert [float(v) for v in ds.PixelSpacing] == [0.5, 0.25]


def test_files_are_marked_synthetic_and_carry_no_patient_data():
    files = encode_dicom_series(_volume(), sample_id="coh-9-000001", model_id="mdl-7f3", modality="CT", seed=1)
    for data in files:
        ds = _read(data)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == SecondaryCaptureImageStorage == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.BurnedInAnnotation == "NO"
        assert ds.ConversionType == "SYN"
        assert ds.SeriesDescription == "SYNTHETIC — synthcohort mdl-7f3"
        assert str(ds.PatientName) == "SYNTHETIC^COHORT"
        assert ds.PatientID == "coh-9-000001"
        assert ds.Modality == "CT"
        assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, 0)
        for field in ("PatientBirthDate", "PatientSex", "StudyDate", "ReferringPhysicianName", "AccessionNumber"):
            assert ds.get(field, "") == ""
        assert "OtherPatientIDs" not in ds and "InstitutionName" not in ds


def test_uids_are_valid_new_per_export_and_reproducible_with_a_seed():
    vol = _volume()

    def uids(files):
        ds = [_read(f) for f in files]
        return ds[0].StudyInstanceUID, ds[0].SeriesInstanceUID, [d.SOPInstanceUID for d in ds]

    a = uids(encode_dicom_series(vol, sample_id="s", model_id="m"))
    b = uids(encode_dicom_series(vol, sample_id="s", model_id="m"))
    for study, series, sops in (a, b):
        for uid in (study, series, *sops):
            assert UID(uid).is_valid and len(uid) <= 64
        assert len(set(sops)) == len(sops) and study != series
    assert a[0] != b[0] and a[1] != b[1] and not set(a[2]) & set(b[2])  # unseeded: fresh each export

    s1 = encode_dicom_series(vol, sample_id="s", model_id="m", seed=5)
    s2 = encode_dicom_series(vol, sample_id="s", model_id="m", seed=5)
    s3 = encode_dicom_series(vol, sample_id="s", model_id="m", seed=6)
    assert s1 == s2  # byte-identical rerun
    assert uids(s1) != uids(s3) and not set(uids(s1)[2]) & set(uids(s3)[2])


def test_value_range_gives_physical_units():
    img = _volume(2, (1, 8, 8))
    (data,) = encode_dicom_series(img, sample_id="s", model_id="m", modality="CT", value_range=(-160.0, 240.0))
    ds = _read(data)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(hu - (-160.0 + 400.0 * img[0])).max() <= 400.0 * QUANTUM
    assert ds.RescaleType == "HU"
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)


def test_rgb_image_is_8bit_rgb():
    img = _volume(3, (3, 5, 4))
    (data,) = encode_dicom_series(img, sample_id="s", model_id="m", modality="fundus")
    ds = _read(data)
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3 and ds.Modality == "OP"
    assert np.abs(ds.pixel_array / 255.0 - np.moveaxis(img, 0, -1)).max() <= 0.5 / 255 + 1e-7


def test_modality_codes():
    assert [modality_code(m) for m in ("CT", "MR", "XR", "US", "fundus", "other", None)] == [
        "CT", "MR", "DX", "US", "OP", "OT", "OT"]


@pytest.mark.parametrize(
    ("image", "kwargs", "field"),
    [
        (np.zeros((2, 4, 4, 4), np.float32), {}, "image"),
        (np.zeros((1, 4, 4, 4), np.float32), {"spacing": (1.0, 1.0)}, "spacing"),
        (np.zeros((1, 4, 4), np.float32), {"spacing": (1.0, -1.0)}, "spacing"),
        (np.zeros((1, 4, 4), np.float32), {"value_range": (1.0, 1.0)}, "value_range"),
        (np.zeros((1, 4, 4), np.float32), {"sample_id": ""}, "sample_id"),
    ],
)
def test_bad_input_names_the_field(image, kwargs, field):
    args = {"sample_id": "s", "model_id": "m", **kwargs}
    with pytest.raises(InvalidInputError) as err:
        encode_dicom_series(image, **args)
    assert err.value.field == field
