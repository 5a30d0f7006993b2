"""Importing the real MedMNIST files: official splits, class names, 2D and 3D, content ids."""

from __future__ import annotations

import numpy as np
import pytest

from synthcohort.core.errors import HoldoutAccessError
from synthcohort.store.datasets import DatasetStore
from synthcohort.store.ingest import import_path

pytestmark = pytest.mark.shared_data


def test_breastmnist_keeps_official_split_and_names(shared_data):
    path = shared_data / "medmnist" / "breastmnist.npz"
    version = import_path(path)
    m = version.meta
    assert m.classes == ["malignant", "normal_benign"]
    assert m.counts == {
        "train": {"malignant": 147, "normal_benign": 399},
        "val": {"malignant": 21, "normal_benign": 57},
        "test": {"malignant": 42, "normal_benign": 114},
    }
    assert (m.modality, m.spatial_dims, m.channels, m.image_size) == ("US", 2, 1, (28, 28))
    assert m.split_origin == "official" and m.normalisation == {"method": "divide", "divisor": 255.0}
    train = version.split("train")
    with np.load(path) as z:
        raw_x, raw_y = z["train_images"], z["train_labels"][:, 0]
    assert train.images.shape == (546, 1, 28, 28)
    np.testing.assert_array_equal(train.images[:, 0], raw_x.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(train.labels, raw_y)
    assert train.masks is None
    with pytest.raises(HoldoutAccessError):
        version.split("test")
    assert len(version.split("test", purpose="validation")) == 156
    rec = version.samples("train")[5]
    assert rec.source_file == "breastmnist.npz:train_images[5]" and len(rec.source_sha256) == 64


def test_content_address_same_input_same_id_other_size_other_id(shared_data):
    path = shared_data / "medmnist" / "breastmnist.npz"
    a = import_path(path)
    assert import_path(path).meta.id == a.meta.id
    b = import_path(path, size=(32, 32))
    assert b.meta.id != a.meta.id and b.meta.image_size == (32, 32)
    assert b.split("val").images.shape == (78, 1, 32, 32)
    c = import_path(path, classes=["m", "nb"])
    assert c.meta.classes == ["m", "nb"] and c.meta.id != a.meta.id
    assert len(DatasetStore().list()) == 3


def test_adrenalmnist3d_is_3d(shared_data):
    version = import_path(shared_data / "medmnist" / "adrenalmnist3d.npz")
    m = version.meta
    assert (m.spatial_dims, m.channels, m.image_size) == (3, 1, (28, 28, 28))
    assert m.classes == ["normal", "hyperplasia"]
    assert m.counts["train"] == {"normal": 929, "hyperplasia": 259}
    assert m.counts["test"] == {"normal": 229, "hyperplasia": 69}
    val = version.split("val")
    assert val.images.shape == (98, 1, 28, 28, 28) and val.images.dtype == np.float32
    assert set(np.unique(val.images)) <= {0.0, 1.0}  # shape masks stored as 0/255


def test_unknown_medmnist_subset_gets_label_names(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "custommnist.npz"
    np.savez(path, train_images=rng.integers(0, 256, (30, 12, 12, 3), dtype=np.uint8),
             train_labels=(np.arange(30) % 3)[:, None], val_images=rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8),
             val_labels=(np.arange(6) % 3)[:, None])
    version = import_path(path)
    assert version.meta.classes == ["label_0", "label_1", "label_2"]
    assert version.meta.channels == 3 and version.meta.counts["val"] == {"label_0": 2, "label_1": 2, "label_2": 2}
    assert version.meta.counts["test"] == {"label_0": 0, "label_1": 0, "label_2": 0}  # none given, none made
