"""The real reference sample is kept out of the domain encoder's training (S_FID encoder bias)."""

from __future__ import annotations

import numpy as np
import pytest

from synthcohort.validation.encoder import (
    domain_encoder,
    state_dict_sha256,
    train_domain_encoder,
)
from synthcohort.validation.reference import (
    indices_fingerprint,
    reference_indices,
    reference_seed,
)

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def breast(shared_data):
    d = np.load(shared_data / "medmnist" / "breastmnist.npz")
    n = 300  # a subset keeps the four encoder trainings short
    return d["train_images"][:n, None].astype(np.float32) / 255.0, d["train_labels"][:n].reshape(-1).astype(np.int64)


def test_reference_is_a_seeded_half_of_the_class(breast):
    _, y = breast
    a = reference_indices(y, 0, seed=reference_seed(0))
    assert np.array_equal(a, reference_indices(y, 0, seed=reference_seed(0)))
    assert len(a) == (y == 0).sum() // 2 and (y[a] == 0).all() and len(np.unique(a)) == len(a)
    assert np.array_equal(a, np.sort(a))
    b = reference_indices(y, 0, seed=reference_seed(1))
    assert not np.array_equal(a, b)
    c = reference_indices(y, 1, seed=reference_seed(0))
    assert (y[c] == 1).all() and len(c) == (y == 1).sum() // 2
    # a tiny class still yields the minimum set size (and never more than the class has)
    tiny = np.array([0] * 7 + [1] * 50)
    assert len(reference_indices(tiny, 0, seed=3, min_size=6)) == 6
    assert len(reference_indices(tiny[:5], 0, seed=3, min_size=6)) == 5
    assert indices_fingerprint(a) != indices_fingerprint(b) and indices_fingerprint(a) == indices_fingerprint(a[::-1])


def test_encoder_is_trained_without_the_reference_and_cached_per_class(breast, tmp_path):
    x, y = breast
    ref0 = reference_indices(y, 0, seed=reference_seed(0))
    ref1 = reference_indices(y, 1, seed=reference_seed(0))
    enc0 = domain_encoder(x, y, seed=5, epochs=1, cache_dir=tmp_path, exclude=ref0)
    keep = np.setdiff1d(np.arange(len(x)), ref0)
    # the same weights as training on the other images only: the reference was never seen
    assert enc0.sha256 == state_dict_sha256(train_domain_encoder(x[keep], y[keep], seed=5, epochs=1))
    assert enc0.sha256 != domain_encoder(x, y, seed=5, epochs=1, cache_dir=tmp_path).sha256
    enc1 = domain_encoder(x, y, seed=5, epochs=1, cache_dir=tmp_path, exclude=ref1)
    assert enc1.sha256 != enc0.sha256 and enc1.excluded == indices_fingerprint(ref1) != enc0.excluded
    assert f"without={enc0.excluded}" in enc0.name
    assert len(list(tmp_path.glob("*.pt"))) == 3  # two classes and no exclusion: three cache entries
    again = domain_encoder(x, y, seed=5, epochs=1, cache_dir=tmp_path, exclude=ref0)  # from the cache
    assert again.sha256 == enc0.sha256 and again.excluded == enc0.excluded
