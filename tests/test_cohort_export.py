"""Cohort archives: only released samples, every format and archive kind, the metadata members,
checksums that `sha256sum -c` accepts, reproducible bytes, and memory bounded while streaming."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from synthcohort.core.errors import InvalidInputError, NotFoundError
from synthcohort.imaging.readers import group_dicom_series, read_dicom_series
from synthcohort.imaging.sample_dir import write_sample_dir
from synthcohort.store.cohort_export import CHUNK_BYTES, ReleasedSample, stream_archive

CLASSES = ["malignant", "benign"]
PROVENANCE = {"dataset_id": "ds-0123456789abcdef", "model_id": "mdl-test", "classes": CLASSES, "modality": "US",
              "verdict": "needs_review", "seeds": {"cohort": 7}, "code_version": "0.1.0"}
HELD = {1, 4}


@pytest.fixture
def cohort_2d(tmp_path):
    """Six 2D samples with masks; samples 1 and 4 are held (not released)."""
    rng = np.random.default_rng(0)
    images = rng.random((6, 1, 12, 10), dtype=np.float32)
    masks = (rng.random((6, 1, 12, 10)) > 0.5).astype(np.uint8)
    rows = write_sample_dir(tmp_path / "s2", images, class_name="malignant", seed=7, model_id="mdl-test", masks=masks)
    released = [_released(r, {"nn_ssim": 0.1 * i, "nearest_train": {"distance": 1.5 + i}})
                for i, r in enumerate(rows) if i not in HELD]
    expected = np.rint(images * 255) / 255  # PNG sources hold 8-bit values
    return tmp_path / "s2", released, expected, masks


@pytest.fixture
def cohort_3d(tmp_path):
    rng = np.random.default_rng(1)
    vols = rng.random((3, 1, 5, 6, 7), dtype=np.float32)
    rows = write_sample_dir(tmp_path / "s3", vols, class_name="benign", seed=3, model_id="mdl-3d",
                            spacing=(2.0, 1.0, 0.5))
    return tmp_path / "s3", [_released(r, {}) for r in rows], vols


def _released(row: dict, scores: dict) -> ReleasedSample:
    return ReleasedSample(index=int(row["index"]), file=row["file"], mask_file=row["mask_file"] or None,
                          class_name=row["class"], seed=int(row["seed"]), model_id=row["model_id"],
                          checkpoint_sha256="c" * 64, scores=scores)


def _extract(data: bytes, archive: str, out: Path) -> Path:
    out.mkdir(parents=True)
    if archive == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert z.testzip() is None
            z.extractall(out)
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
            t.extractall(out, filter="data")
    return out


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _sha256sum_check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)


def test_zip_holds_released_samples_manifest_datalist_provenance_and_sums(cohort_2d, tmp_path):
    from monai.data import load_decathlon_datalist

    samples_dir, released, _, _ = cohort_2d
    data = b"".join(stream_archive(samples_dir, released, fmt="png", archive="zip", provenance=PROVENANCE))
    out = _extract(data, "zip", tmp_path / "out")
    kept = [0, 2, 3, 5]
    assert _files(out) == {"manifest.csv", "datalist.json", "provenance.json", "SHA256SUMS",
                           *(f"images/{i:06d}.png" for i in kept), *(f"masks/{i:06d}.png" for i in kept)}
    check = _sha256sum_check(out)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(_files(out)) - 1  # everything but SHA256SUMS itself

    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == kept
    assert {"file", "mask_file", "class", "label", "seed", "model_id", "checkpoint_sha256",
            "score_nn_ssim", "score_nearest_train_distance"} <= set(rows[0])
    assert rows[1]["file"] == "images/000002.png" and rows[1]["mask_file"] == "masks/000002.png"
    assert rows[1]["label"] == "0" and rows[1]["class"] == "malignant" and rows[1]["seed"] == "7"
    assert float(rows[1]["score_nearest_train_distance"]) == pytest.approx(1.5 + 2)
    assert rows[0]["checkpoint_sha256"] == "c" * 64

    items = load_decathlon_datalist(out / "datalist.json", is_segmentation=False, data_list_key="training")
    assert [Path(it["image"]) for it in items] == [out / f"images/{i:06d}.png" for i in kept]
    assert [Path(it["mask"]) for it in items] == [out / f"masks/{i:06d}.png" for i in kept]
    assert all(it["label"] == 0 for it in items)
    assert json.loads((out / "provenance.json").read_text()) == PROVENANCE


@pytest.mark.parametrize("archive", ["zip", "tar", "tar.gz"])
@pytest.mark.parametrize("fmt", ["png", "nifti", "dicom", "npz"])
def test_2d_formats_round_trip(cohort_2d, tmp_path, fmt, archive):
    samples_dir, released, expected, masks = cohort_2d
    data = b"".join(stream_archive(samples_dir, released, fmt=fmt, archive=archive, provenance=PROVENANCE))
    out = _extract(data, archive, tmp_path / "out")
    assert _sha256sum_check(out).returncode == 0
    kept = [s.index for s in released]
    if fmt == "npz":
        with np.load(out / "cohort.npz") as z:
            assert z["images"].dtype == np.float32 and z["masks"].dtype == np.uint8
            np.testing.assert_array_equal(z["index"], kept)
            np.testing.assert_array_equal(z["labels"], [0] * len(kept))
            np.testing.assert_allclose(z["images"], expected[kept], atol=1e-7)
            np.testing.assert_array_equal(z["masks"], masks[kept])
        return
    for i in kept:
        if fmt == "png":
            img = np.asarray(Image.open(out / f"images/{i:06d}.png"), dtype=np.float32)[None] / 255
            mask = np.asarray(Image.open(out / f"masks/{i:06d}.png"))[None] > 127
            tol = 1e-7
        elif fmt == "nifti":
            nii = nib.load(out / f"images/{i:06d}.nii.gz")
            assert nii.shape == (12, 10, 1)  # a 2D image is a 1-slice volume
            img = np.asarray(nii.dataobj)[:, :, 0][None]
            mask = np.asarray(nib.load(out / f"masks/{i:06d}.nii.gz").dataobj)[:, :, 0][None] > 0
            tol = 1e-7
        else:
            ds = pydicom.dcmread(out / f"images/{i:06d}.dcm")
            img = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))[None]
            assert ds.Modality == "US" and ds.PatientID.endswith(f"{i:06d}")
            mds = pydicom.dcmread(out / f"masks/{i:06d}.dcm")
            assert mds.StudyInstanceUID == ds.StudyInstanceUID and mds.SeriesInstanceUID != ds.SeriesInstanceUID
            mask = mds.pixel_array[None] > 0
            tol = 0.5 / 65535 + 1e-7
        assert np.abs(img - expected[i]).max() <= tol
        np.testing.assert_array_equal(mask, masks[i].astype(bool))


def test_3d_exports_keep_volume_and_spacing(cohort_3d, tmp_path):
    samples_dir, released, vols = cohort_3d
    prov = {**PROVENANCE, "modality": "CT"}
    # NIfTI: the sample files unchanged; the tar stream is one GNU tar reads.
    tar_file = tmp_path / "cohort.tar"
    tar_file.write_bytes(b"".join(stream_archive(samples_dir, released, fmt="nifti", archive="tar", provenance=prov)))
    out = tmp_path / "nii"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(tar_file), "-C", str(out)], check=True)
    assert _sha256sum_check(out).returncode == 0
    assert (out / "images/000001.nii.gz").read_bytes() == (samples_dir / "images/000001.nii.gz").read_bytes()
    assert json.loads((out / "datalist.json").read_text())["tensorImageSize"] == "3D"
    # DICOM: one series (folder) per volume, read back by the ingestion reader.
    out = _extract(b"".join(stream_archive(samples_dir, released, fmt="dicom", archive="zip", provenance=prov)),
                   "zip", tmp_path / "dcm")
    assert _sha256sum_check(out).returncode == 0
    for i in range(3):
        files = sorted((out / f"images/{i:06d}").glob("*.dcm"))
        assert len(files) == 5
        (uid, members), = group_dicom_series(files).items()
        series = read_dicom_series(uid, members, where=out)
        assert series.spacing == pytest.approx((2.0, 1.0, 0.5))
        assert series.modality == "CT"
        assert np.abs(series.data - vols[i, 0]).max() <= 0.5 / 65535 + 1e-6
    # npz
    out = _extract(b"".join(stream_archive(samples_dir, released, fmt="npz", archive="zip", provenance=prov)),
                   "zip", tmp_path / "npz")
    with np.load(out / "cohort.npz") as z:
        assert z["images"].shape == (3, 1, 5, 6, 7) and "masks" not in z.files
        np.testing.assert_allclose(z["images"], vols, atol=1e-7)
        np.testing.assert_array_equal(z["labels"], [1, 1, 1])
    with pytest.raises(InvalidInputError) as err:
        stream_archive(samples_dir, released, fmt="png", archive="zip", provenance=prov)
    assert err.value.field == "format"


def test_checksums_catch_an_altered_file(cohort_2d, tmp_path):
    samples_dir, released, _, _ = cohort_2d
    out = _extract(b"".join(stream_archive(samples_dir, released, fmt="png", archive="zip", provenance=PROVENANCE)),
                   "zip", tmp_path / "out")
    target = out / "images/000003.png"
    raw = bytearray(target.read_bytes())
    raw[-20] ^= 0xFF
    target.write_bytes(bytes(raw))
    check = _sha256sum_check(out)
    assert check.returncode != 0 and "images/000003.png: FAILED" in check.stdout


def test_same_cohort_gives_the_same_bytes(cohort_2d):
    samples_dir, released, _, _ = cohort_2d
    for fmt, archive in (("dicom", "zip"), ("nifti", "tar.gz")):
        a = b"".join(stream_archive(samples_dir, released, fmt=fmt, archive=archive, provenance=PROVENANCE))
        b = b"".join(stream_archive(samples_dir, list(reversed(released)), fmt=fmt, archive=archive,
                                    provenance=PROVENANCE))
        assert a == b
    if archive == "tar.gz":
        assert gzip.decompress(a)[:512].find(b"images/000000.nii.gz") >= 0


def test_labels_and_modality_come_from_the_dataset_store(cohort_2d, tmp_path):
    from synthcohort.store.datasets import (
        DatasetBuild,
        DatasetStore,
        SampleRecord,
        SplitArrays,
    )

    images = np.zeros((2, 1, 4, 4), np.float32)
    build = DatasetBuild(
        name="tiny", modality="CT", classes=["benign", "malignant"],
        splits={"train": SplitArrays(images, np.array([0, 1]), None, ["a", "b"])},
        records=[SampleRecord("a", "train", 0, "benign", "a.png", "0" * 64),
                 SampleRecord("b", "train", 1, "malignant", "b.png", "1" * 64)],
        normalisation={"method": "window", "width": 400.0, "level": 40.0}, source={"kind": "test"},
        split_origin="test", spacing=(0.5, 0.5))
    version = DatasetStore().commit(build)
    samples_dir, released, expected, _ = cohort_2d
    data = b"".join(stream_archive(samples_dir, released[:1], fmt="dicom", archive="zip",
                                   provenance={"dataset_id": version.id}))
    out = _extract(data, "zip", tmp_path / "out")
    with open(out / "manifest.csv", newline="") as f:
        assert next(csv.DictReader(f))["label"] == "1"  # malignant is class 1 in this dataset
    ds = pydicom.dcmread(out / "images/000000.dcm")
    assert ds.Modality == "CT" and [float(v) for v in ds.PixelSpacing] == [0.5, 0.5]
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(hu - (-160 + 400 * expected[0, 0])).max() <= 400 / 65535  # the CT window, back in HU


def test_bad_requests_fail_before_any_byte(cohort_2d):
    samples_dir, released, _, _ = cohort_2d
    cases = [
        (dict(fmt="jpeg", archive="zip", provenance=PROVENANCE), InvalidInputError, "format"),
        (dict(fmt="png", archive="rar", provenance=PROVENANCE), InvalidInputError, "archive"),
        (dict(fmt="png", archive="zip", provenance={"model_id": "m"}), InvalidInputError, "provenance"),
        (dict(fmt="png", archive="zip", provenance={**PROVENANCE, "classes": ["benign"]}), InvalidInputError, "class"),
    ]
    for kwargs, error, field in cases:
        with pytest.raises(error) as err:
            stream_archive(samples_dir, released, **kwargs)
        assert err.value.field == field
    (samples_dir / "images/000002.png").unlink()
    with pytest.raises(NotFoundError) as err:
        stream_archive(samples_dir, released, fmt="png", archive="zip", provenance=PROVENANCE)
    assert err.value.path.endswith("images/000002.png")


@pytest.mark.parametrize("archive", ["tar", "zip"])
def test_memory_stays_bounded_while_streaming(tmp_path, archive):
    """Peak traced memory must not follow the archive size. 10x the samples (the archive grows
    by ~30 MB) may add only a constant (the stream buffer and the three text spools, each at
    most a few CHUNK_BYTES) plus, for zip, the central directory zipfile keeps until the end
    (about 1 KB of ZipInfo a member); tar keeps nothing per member."""
    rng = np.random.default_rng(0)
    rows = write_sample_dir(tmp_path / "s", rng.random((20, 1, 128, 128), dtype=np.float32),
                            class_name="a", seed=1, model_id="mdl-m")

    def run(n: int) -> tuple[int, int, int]:
        released = [ReleasedSample(i, rows[i % 20]["file"], None, "a", 1, "mdl-m", "c" * 64, {"d": 0.5})
                    for i in range(n)]  # the same files released under many indices
        tracemalloc.start()
        total = biggest = 0
        for chunk in stream_archive(tmp_path / "s", released, fmt="png", archive=archive,
                                    provenance={"classes": ["a"]}):
            total += len(chunk)
            biggest = max(biggest, len(chunk))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return total, peak, biggest

    n_small, n_big = 200, 2000
    small_total, small_peak, _ = run(n_small)
    big_total, big_peak, biggest = run(n_big)
    grown = big_peak - small_peak
    assert big_total > 9 * small_total
    assert big_peak < big_total / 4, (big_peak, big_total)
    per_member = 1200 if archive == "zip" else 100
    assert grown < per_member * (n_big - n_small) + 4 * CHUNK_BYTES, (grown, big_total - small_total)
    if archive == "tar":
        assert biggest <= 2 * CHUNK_BYTES + 4096  # pieces are bounded; zip's central directory is one write
