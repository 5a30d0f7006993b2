"""Bad input: each case raises a SynthcohortError naming the file and the reason, and leaves
nothing behind (no dataset, no half-written folder, no temporary extraction folder)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from synthcohort.core.errors import InvalidInputError, TooLargeError
from synthcohort.core.settings import get_settings
from synthcohort.store.datasets import DatasetStore
from synthcohort.store.ingest import import_path


def assert_nothing_left(home):
    assert DatasetStore().list() == []
    datasets = home / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []
    tmp = home / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def expect_error(home, path, match, err=InvalidInputError, **kw):
    with pytest.raises(err) as exc:
        import_path(path, **kw)
    assert match in exc.value.message, exc.value.message
    assert_nothing_left(home)
    return exc.value


def _pngs(folder, n=4, size=(10, 10), seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.shared_data
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_npz(synthcohort_home, shared_data, tmp_path, damage):
    data = (shared_data / "medmnist" / "breastmnist.npz").read_bytes()
    bad = tmp_path / "broken.npz"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not an npz" * 20)
    e = expect_error(synthcohort_home, bad, str(bad))
    assert "corrupt" in e.reason


def test_npz_without_medmnist_arrays(synthcohort_home, tmp_path):
    bad = tmp_path / "other.npz"
    np.savez(bad, x=np.zeros(3))
    expect_error(synthcohort_home, bad, "no train_images")


@pytest.mark.shared_data
def test_truncated_nifti(synthcohort_home, shared_data, tmp_path):
    root = tmp_path / "hippo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = sorted(p.name for p in (shared_data / "hippocampus" / "images").iterdir())[:3]
    for n in names:
        shutil.copy(shared_data / "hippocampus" / "images" / n, root / "images" / n)
        shutil.copy(shared_data / "hippocampus" / "labels" / n, root / "labels" / n)
    victim = root / "images" / names[1]
    victim.write_bytes(victim.read_bytes()[:300])
    e = expect_error(synthcohort_home, root, str(victim))
    assert "truncated" in e.reason


@pytest.mark.shared_data
def test_nifti_label_without_image(synthcohort_home, shared_data, tmp_path):
    root = tmp_path / "hippo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    n = sorted(p.name for p in (shared_data / "hippocampus" / "images").iterdir())[0]
    shutil.copy(shared_data / "hippocampus" / "images" / n, root / "images" / n)
    shutil.copy(shared_data / "hippocampus" / "labels" / n, root / "labels" / "other.nii.gz")
    expect_error(synthcohort_home, root, "other.nii.gz")


@pytest.fixture
def dicom_copy(shared_data, tmp_path):
    out = tmp_path / "series"
    shutil.copytree(shared_data / "dicom" / "study1_hippocrop", out)
    return out


@pytest.mark.shared_data
def test_dicom_missing_slice(synthcohort_home, dicom_copy):
    import pydicom

    files = sorted(dicom_copy.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    files[len(files) // 2].unlink()
    uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    e = expect_error(synthcohort_home, dicom_copy, "missing slices")
    assert uid in e.reason and e.path == str(dicom_copy)


@pytest.mark.shared_data
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_dicom(synthcohort_home, dicom_copy, damage):
    victim = sorted(dicom_copy.iterdir())[5]
    data = victim.read_bytes()
    victim.write_bytes(data[:-400] if damage == "truncated" else b"\x00" * 50)
    e = expect_error(synthcohort_home, dicom_copy, str(victim))
    assert "corrupt or truncated" in e.reason


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_png(synthcohort_home, tmp_path, damage):
    root = tmp_path / "pics"
    _pngs(root / "a", size=(32, 32))
    _pngs(root / "b", size=(32, 32), seed=1)
    victim = root / "b" / "2.png"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"PNG? no" * 9)
    e = expect_error(synthcohort_home, root, str(victim))
    assert "corrupt or truncated" in e.reason


def test_mixed_shapes_in_one_class_need_a_size(synthcohort_home, tmp_path):
    root = tmp_path / "pics"
    _pngs(root / "a", n=4)
    _pngs(root / "b", n=3)
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "b" / "odd.png")
    e = expect_error(synthcohort_home, root, str(root / "b" / "odd.png"))
    assert "--size" in e.reason and "(1, 12, 10)" in e.reason
    assert import_path(root, size=(10, 10)).meta.image_size == (10, 10)  # resampling fixes it


def test_empty_class_folder(synthcohort_home, tmp_path):
    root = tmp_path / "pics"
    _pngs(root / "a")
    (root / "empty").mkdir()
    (root / "empty" / ".DS_Store").write_bytes(b"x")
    e = expect_error(synthcohort_home, root, str(root / "empty"))
    assert "no images" in e.reason


def test_unknown_label_in_csv_names_the_row(synthcohort_home, tmp_path):
    root = tmp_path / "csv"
    _pngs(root, n=4)
    (root / "labels.csv").write_text("file,label\n0.png,benign\n1.png,malignant\n2.png,benign\n3.png,typo\n")
    e = expect_error(synthcohort_home, root, "row 5", classes=["benign", "malignant"])
    assert "labels.csv" in e.path and "'typo'" in e.reason


def test_csv_naming_a_missing_or_outside_file(synthcohort_home, tmp_path):
    root = tmp_path / "csv"
    _pngs(root, n=2)
    (root / "labels.csv").write_text("file,label\n0.png,a\n../secret.png,b\n")
    expect_error(synthcohort_home, root, "row 3")


def test_file_over_max_file_bytes(synthcohort_home, tmp_path, monkeypatch):
    root = tmp_path / "pics"
    _pngs(root / "a", size=(64, 64))
    _pngs(root / "b", size=(64, 64), seed=2)
    monkeypatch.setenv("SYNTHCOHORT_MAX_FILE_BYTES", "1000")
    get_settings.cache_clear()
    e = expect_error(synthcohort_home, root, str(root / "a" / "0.png"), err=TooLargeError)
    assert "max_file_bytes" in e.reason


def test_unknown_format_and_missing_path(synthcohort_home, tmp_path):
    expect_error(synthcohort_home, tmp_path / "nope", "does not exist")
    (tmp_path / "x.txt").write_text("hi")
    expect_error(synthcohort_home, tmp_path / "x.txt", "single file")
    (tmp_path / "empty").mkdir()
    expect_error(synthcohort_home, tmp_path / "empty", "cannot tell the format")
    expect_error(synthcohort_home, tmp_path / "x.txt", "unknown format", format="dicomm")


@pytest.mark.parametrize(
    "kw, field, words",
    [
        ({"normalise": "gamma:2"}, "normalise", "unknown method"),
        ({"normalise": "window:0,40"}, "normalise", "width must be positive"),
        ({"normalise": "percentile:99,1"}, "normalise", "low < high"),
        ({"size": (16, 16, 16)}, "size", "images are 2D"),
        ({"modality": "PET"}, "modality", "unknown modality"),
        ({"classes": ["only_one"]}, "classes", "labels 0..1"),
    ],
)
def test_bad_options_name_the_field(synthcohort_home, tmp_path, kw, field, words):
    npz = tmp_path / "tiny.npz"
    np.savez(npz, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.array([[0], [1], [0], [1]]))
    with pytest.raises(InvalidInputError) as exc:
        import_path(npz, **kw)
    assert exc.value.field == field and words in exc.value.reason
    assert_nothing_left(synthcohort_home)
