"""NIfTI (hippocampus, with masks) and DICOM (one real MR series) imports."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from synthcohort.imaging.readers import read_nifti
from synthcohort.store.ingest import import_path

pytestmark = pytest.mark.shared_data


@pytest.fixture
def hippo_subset(hippocampus_subset):
    return hippocampus_subset(10)


def test_hippocampus_subset_with_masks(hippo_subset):
    version = import_path(hippo_subset, modality="MR", class_name="hippocampus")
    m = version.meta
    assert (m.spatial_dims, m.image_size, m.classes, m.has_masks) == (3, (32, 48, 32), ["hippocampus"], True)
    assert sum(m.counts[s]["hippocampus"] for s in m.counts) == 10
    assert m.details["mask_label_values"] == [1, 2] and m.details["mask_foreground"] == "label > 0"
    assert m.details["source_orientation"] == ["RAS"] and m.details["source_spacing"] == [[1.0, 1.0, 1.0]]
    assert m.normalisation == {"method": "percentile", "low": 1.0, "high": 99.0, "per": "volume"}
    train = version.split("train")
    assert train.images.shape[1:] == (1, 32, 48, 32) and train.masks.shape[1:] == (1, 32, 48, 32)
    assert set(np.unique(train.masks)) == {0, 1}
    # the mask follows its image: foreground fraction is preserved by nearest resampling (±20 %)
    rec = version.samples("train")[0]
    label = np.asarray(nib.load(hippo_subset / rec.mask_file).dataobj)
    frac_src = (label > 0).mean()
    frac_dst = train.masks[0].mean()
    assert abs(frac_dst - frac_src) / frac_src < 0.2
    # spacing per sample is the source spacing stretched by the resampling
    shape = read_nifti(hippo_subset / rec.source_file).data.shape
    assert rec.spacing == "x".join(f"{round(s / t, 6):g}" for s, t in zip(shape, (32, 48, 32)))
    # images are the 1st-99th percentile scaling of the source: the extremes are hit
    assert train.images.max() == 1.0 and train.images.min() == 0.0


def test_hippocampus_full_folder(shared_data):
    version = import_path(shared_data / "hippocampus", modality="MR")
    counts = version.meta.counts
    assert sum(sum(c.values()) for c in counts.values()) == 260
    assert counts["test"] == {"all": 39} and counts["val"] == {"all": 39}
    assert version.meta.has_masks


def test_nifti_seg_suffix_pairs_and_size(hippo_subset, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted((hippo_subset / "images").iterdir())[:4]:
        stem = f.name[: -len(".nii.gz")]
        shutil.copy(f, flat / f.name)
        shutil.copy(hippo_subset / "labels" / f.name, flat / f"{stem}_seg.nii.gz")
    version = import_path(flat, size=(16, 16, 16), normalise="minmax")
    assert version.meta.image_size == (16, 16, 16) and version.meta.has_masks
    assert sum(sum(c.values()) for c in version.meta.counts.values()) == 4
    assert version.meta.normalisation["method"] == "minmax"


def test_dicom_series_spacing_from_headers(shared_data):
    folder = shared_data / "dicom" / "study1_t1post"
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    version = import_path(folder)
    m = version.meta
    assert m.modality == "MR"  # read from the files' Modality
    assert m.counts["train"] == {"all": 1} and m.spatial_dims == 3 and m.image_size == (32, 48, 32)
    (slice_step, row_sp, col_sp), = m.details["source_spacing"]
    assert (row_sp, col_sp) == tuple(float(v) for v in headers[0].PixelSpacing) == (0.4297, 0.4297)
    # slices are 5 mm thick but 6.5 mm apart (SpacingBetweenSlices and the positions agree)
    assert m.details["slice_thickness"] == [float(headers[0].SliceThickness)] == [5.0]
    assert slice_step == pytest.approx(float(headers[0].SpacingBetweenSlices), abs=1e-3) == 6.5
    assert m.details["source_shape_min"] == [22, 512, 512]
    vol = version.split("train").images[0, 0]
    assert vol.shape == (32, 48, 32) and 0.0 <= vol.min() and vol.max() <= 1.0 and vol.std() > 0.05


def test_dicom_slices_are_ordered_by_position_and_rescaled(shared_data, tmp_path):
    """A CT copy of the small series with shuffled file names and a rescale: order and HU hold."""
    src = sorted((shared_data / "dicom" / "study1_hippocrop").iterdir())
    out = tmp_path / "ct"
    out.mkdir()
    rng = np.random.default_rng(0)
    names = rng.permutation(len(src))
    raw_by_pos = {}
    for f, k in zip(src, names):
        ds = pydicom.dcmread(f)
        ds.Modality = "CT"
        ds.RescaleSlope = 2
        ds.RescaleIntercept = -1000
        ds.save_as(out / f"x{k:03d}.dcm")
        raw_by_pos[float(ds.ImagePositionPatient[2])] = ds.pixel_array.astype(np.float32) * 2 - 1000
    ordered = np.stack([raw_by_pos[z] for z in sorted(raw_by_pos)])
    version = import_path(out, size=ordered.shape, class_name="ct")
    assert version.meta.modality == "CT"
    assert version.meta.normalisation == {"method": "window", "name": "soft-tissue", "width": 400.0, "level": 40.0}
    want = np.clip((ordered - (40 - 200)) / 400, 0, 1)
    np.testing.assert_allclose(version.split("train").images[0, 0], want, atol=1e-5)


def test_single_slice_dicom_series_are_2d_samples(shared_data, tmp_path):
    """Radiograph-like input: every file its own one-slice series → 2D samples, kept at their size."""
    src = sorted((shared_data / "dicom" / "study1_hippocrop").iterdir())[:6]
    out = tmp_path / "xr"
    out.mkdir()
    for k, f in enumerate(src):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(k)])
        ds.Modality = "DX"
        ds.save_as(out / f"{k}.dcm")
    version = import_path(out)
    m = version.meta
    rows, cols = int(pydicom.dcmread(src[0]).Rows), int(pydicom.dcmread(src[0]).Columns)
    assert (m.modality, m.spatial_dims, m.image_size) == ("XR", 2, (rows, cols))
    assert sum(sum(c.values()) for c in m.counts.values()) == 6
    assert m.normalisation["method"] == "minmax"
