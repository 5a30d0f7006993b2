"""Class folders (MedNIST JPEGs) and labels.csv imports."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from synthcohort.core.errors import HoldoutAccessError
from synthcohort.store.ingest import import_path


@pytest.fixture
def mednist_subset(shared_data, tmp_path):
    """20 JPEGs of each of three MedNIST classes (Hand made the minority with 10)."""
    root = tmp_path / "mednist"
    for cls, n in (("CXR", 20), ("HeadCT", 20), ("Hand", 10)):
        (root / cls).mkdir(parents=True)
        for f in sorted((shared_data / "mednist" / cls).iterdir())[:n]:
            shutil.copy(f, root / cls / f.name)
    return root


@pytest.mark.shared_data
def test_mednist_class_folders(mednist_subset):
    version = import_path(mednist_subset, modality="XR")
    m = version.meta
    assert m.classes == ["CXR", "Hand", "HeadCT"]
    # 15 % of 20 = 3; 15 % of 10 = 1.5, rounded half up = 2
    assert m.counts == {"train": {"CXR": 14, "Hand": 6, "HeadCT": 14},
                        "val": {"CXR": 3, "Hand": 2, "HeadCT": 3},
                        "test": {"CXR": 3, "Hand": 2, "HeadCT": 3}}
    assert (m.channels, m.image_size, m.split_origin) == (1, (64, 64), "stratified seed=0 val=0.15 test=0.15")
    train = version.split("train")
    rec = version.samples("train")[0]
    assert rec.sample_id == train.sample_ids[0]
    src = mednist_subset / rec.source_file
    with Image.open(src) as im:
        np.testing.assert_array_equal(train.images[0, 0], np.asarray(im, dtype=np.float32) / 255.0)
    assert train.labels[0] == m.classes.index(rec.source_file.split("/")[0])
    with pytest.raises(HoldoutAccessError):
        version.split("test")
    # the seed drives the split: another seed, another split and id; the same seed, the same id
    other = import_path(mednist_subset, modality="XR", seed=1)
    assert other.meta.id != version.meta.id
    assert set(other.split("val").sample_ids) != set(version.split("val").sample_ids)
    assert import_path(mednist_subset, modality="XR").meta.id == version.meta.id


def _write_pngs(root, n=8, size=(10, 12), rgb=False):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        shape = (*size, 3) if rgb else size
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / f"img{i}.png")
        names.append(f"img{i}.png")
    return names


def test_labels_csv_with_class_names(tmp_path):
    root = tmp_path / "csvset"
    names = _write_pngs(root / "pics", n=12)
    rows = ["file,label"] + [f"pics/{n},{'rare' if i % 4 == 0 else 'common'}" for i, n in enumerate(names)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    version = import_path(root, classes=["common", "rare"], size=(16, 16))
    m = version.meta
    assert m.classes == ["common", "rare"] and m.image_size == (16, 16)
    total = {c: sum(m.counts[s][c] for s in m.counts) for c in m.classes}
    assert total == {"common": 9, "rare": 3}
    recs = {r.source_file: r for r in version.samples()}
    assert recs["pics/img0.png"].class_name == "rare" and recs["pics/img1.png"].class_name == "common"


def test_resize_gives_requested_size_and_rgb_is_kept(tmp_path):
    root = tmp_path / "rgb"
    _write_pngs(root / "a", n=5, rgb=True)
    _write_pngs(root / "b", n=5, rgb=True)
    version = import_path(root, size=(20, 24))
    assert version.meta.channels == 3 and version.meta.image_size == (20, 24)
    assert version.split("train").images.shape[1:] == (3, 20, 24)


def test_16bit_pictures_scale_by_65535(tmp_path):
    rng = np.random.default_rng(1)
    raw = {}
    for cls in ("a", "b"):
        (tmp_path / "x" / cls).mkdir(parents=True)
        for i in range(4):
            arr = rng.integers(0, 65536, (6, 6), dtype=np.uint16)
            Image.fromarray(arr).save(tmp_path / "x" / cls / f"{i}.png")
            raw[f"{cls}/{i}.png"] = arr
    version = import_path(tmp_path / "x")
    assert version.meta.normalisation == {"method": "divide", "divisor": 65535.0}
    train = version.split("train")
    for sid, img in zip(train.sample_ids, train.images):
        np.testing.assert_allclose(img[0], raw[sid] / 65535.0, atol=1e-7)
