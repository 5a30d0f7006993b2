"""The dataset store contract: content ids, immutability, hold-out protection, provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthcohort.core.errors import HoldoutAccessError, InvalidInputError, NotFoundError
from synthcohort.store.datasets import (
    DatasetBuild,
    DatasetStore,
    SampleRecord,
    SplitArrays,
)
from synthcohort.store.splits import stratified_split


def _build(seed: int = 0, *, eight_bit: bool = True, name: str = "toy") -> DatasetBuild:
    rng = np.random.default_rng(seed)
    splits, records = {}, []
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        raw = rng.integers(0, 256, size=(n, 1, 8, 8))
        images = (raw / 255.0).astype(np.float32) if eight_bit else rng.random((n, 1, 8, 8), dtype=np.float32)
        labels = np.arange(n) % 2
        masks = (rng.random((n, 1, 8, 8)) > 0.8).astype(np.uint8)
        ids = [f"{split}-{i}" for i in range(n)]
        splits[split] = SplitArrays(images, labels, masks, ids)
        records += [SampleRecord(s, split, int(lab), ["a", "b"][lab], f"f/{s}.png", f"{i:064x}")
                    for i, (s, lab) in enumerate(zip(ids, labels))]
    return DatasetBuild(name=name, modality="XR", classes=["a", "b"], splits=splits, records=records,
                        normalisation={"method": "divide", "divisor": 255.0},
                        source={"format": "test", "path": f"/somewhere/{seed}"}, split_origin="official")


@pytest.mark.parametrize("eight_bit", [True, False])
def test_commit_round_trips_arrays_exactly(synthcohort_home, eight_bit):
    build = _build(eight_bit=eight_bit)
    version = DatasetStore().commit(build)
    assert version.path == synthcohort_home / "datasets" / version.meta.id
    assert {p.name for p in version.path.iterdir()} == {"dataset.json", "samples.csv", "train.npz", "val.npz", "test.npz"}
    got = version.split("train")
    want = build.splits["train"]
    assert got.images.dtype == np.float32 and got.labels.dtype == np.int64 and got.masks.dtype == np.uint8
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.masks, want.masks)
    assert got.sample_ids == want.sample_ids
    meta = version.meta
    assert meta.spatial_dims == 2 and meta.channels == 1 and meta.image_size == (8, 8) and meta.has_masks
    assert meta.counts == {"train": {"a": 6, "b": 6}, "val": {"a": 2, "b": 2}, "test": {"a": 2, "b": 2}}
    on_disk = json.loads((version.path / "dataset.json").read_text())
    assert on_disk["id"] == meta.id and on_disk["counts"] == meta.counts


def test_same_content_same_id_and_different_content_different_id():
    store = DatasetStore()
    a = store.commit(_build(0))
    again = store.commit(_build(0))
    assert again.meta.id == a.meta.id and again.meta.created_at == a.meta.created_at
    assert store.commit(_build(1)).meta.id != a.meta.id
    assert store.commit(_build(0, name="other name")).meta.id != a.meta.id
    assert a.meta.id.startswith("ds-") and len(a.meta.id) == 3 + 16
    assert [m.id for m in store.list()].count(a.meta.id) == 1 and len(store.list()) == 3


def test_id_ignores_source_path_but_not_checksums():
    a = _build(0)
    b = _build(0)
    b.source = {**b.source, "path": "/elsewhere", "archive": "x.zip"}
    assert DatasetStore().commit(a).meta.id == DatasetStore().commit(b).meta.id
    c = _build(0)
    c.records = [SampleRecord(**{**r.__dict__, "source_sha256": "f" * 64}) for r in c.records]
    assert DatasetStore().commit(c).meta.id != DatasetStore().commit(a).meta.id


def test_holdout_needs_validation_purpose():
    version = DatasetStore().commit(_build())
    with pytest.raises(HoldoutAccessError, match="hold-out"):
        version.split("test")
    with pytest.raises(HoldoutAccessError):
        version.split("test", purpose="training")
    assert len(version.split("test", purpose="validation")) == 4
    assert len(version.split("val")) == 4
    with pytest.raises(InvalidInputError, match="purpose"):
        version.split("test", purpose="anything")
    with pytest.raises(InvalidInputError, match="unknown split"):
        version.split("holdout", purpose="validation")


def test_class_index_and_samples():
    version = DatasetStore().commit(_build())
    assert version.class_index("b") == 1
    with pytest.raises(InvalidInputError) as exc:
        version.class_index("c")
    assert exc.value.field == "class" and "a, b" in exc.value.reason
    rows = version.samples("val")
    assert [r.sample_id for r in rows] == version.split("val").sample_ids
    assert rows[1].label == 1 and rows[1].class_name == "b" and rows[1].source_file == "f/val-1.png"
    assert len(version.samples()) == 20


def test_get_unknown_id_and_bad_builds():
    with pytest.raises(NotFoundError):
        DatasetStore().get("ds-0000000000000000")
    bad = _build()
    bad.splits["train"].images[0, 0, 0, 0] = 1.5
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        DatasetStore().commit(bad)
    bad = _build()
    bad.splits["val"].labels[0] = 7
    with pytest.raises(InvalidInputError, match="labels outside"):
        DatasetStore().commit(bad)
    assert DatasetStore().list() == []


def test_stratified_split_is_seeded_and_stratified():
    labels = np.array([0] * 100 + [1] * 20)
    a = stratified_split(labels, seed=3)
    b = stratified_split(labels, seed=3)
    c = stratified_split(labels, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["test"], c["test"])
    all_idx = np.concatenate([a["train"], a["val"], a["test"]])
    assert sorted(all_idx.tolist()) == list(range(120))
    assert [int((labels[a[s]] == 1).sum()) for s in ("train", "val", "test")] == [14, 3, 3]
    assert [int((labels[a[s]] == 0).sum()) for s in ("train", "val", "test")] == [70, 15, 15]
    tiny = stratified_split(np.array([0, 0, 0, 1]), seed=0)
    assert (np.array([0, 0, 0, 1])[tiny["train"]] == 1).sum() == 1  # a lone sample stays in train
