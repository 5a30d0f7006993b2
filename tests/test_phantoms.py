"""The demo's generated phantoms: seeded, imbalanced, lesions where the masks say."""

from __future__ import annotations

import numpy as np

from synthcohort.imaging.phantoms import CLASSES, make_phantoms
from synthcohort.store.ingest import import_demo


def test_2d_phantoms_are_seeded_imbalanced_and_lesions_match_masks():
    a = make_phantoms(2, seed=7, counts={"train": (30, 6), "val": (5, 2)})
    b = make_phantoms(2, seed=7, counts={"train": (30, 6), "val": (5, 2)})
    c = make_phantoms(2, seed=8, counts={"train": (30, 6), "val": (5, 2)})
    np.testing.assert_array_equal(a["train"].images, b["train"].images)
    assert not np.array_equal(a["train"].images, c["train"].images)
    tr = a["train"]
    assert tr.images.shape == (36, 1, 32, 32) and tr.images.dtype == np.float32
    assert 0.0 <= tr.images.min() and tr.images.max() <= 1.0
    assert np.bincount(tr.labels).tolist() == [30, 6]
    lesion = tr.labels == CLASSES.index("lesion")
    assert (tr.masks[~lesion] == 0).all()
    assert (tr.masks[lesion].reshape(6, -1).sum(1) > 5).all()
    for img, m in zip(tr.images[lesion], tr.masks[lesion]):
        # the lesion is brighter than the organ tissue around it
        assert img[m == 1].mean() > img[m == 0][img[m == 0] > 0.25].mean() + 0.2


def test_3d_phantoms_have_spherical_lesions():
    ph = make_phantoms(3, seed=0, size=24, counts={"train": (4, 2)})["train"]
    assert ph.images.shape == (6, 1, 24, 24, 24)
    vol = ph.masks[ph.labels == 1][0, 0]
    zz, yy, xx = np.nonzero(vol)
    extent = [int(np.ptp(a)) + 1 for a in (zz, yy, xx)]
    assert max(extent) - min(extent) <= 1  # round in every direction


def test_demo_import_is_deterministic():
    a = import_demo(2, seed=3)
    assert import_demo(2, seed=3).meta.id == a.meta.id
    m = a.meta
    assert m.counts["train"] == {"normal": 640, "lesion": 128} and m.has_masks
    assert m.counts["test"] == {"normal": 320, "lesion": 64}
