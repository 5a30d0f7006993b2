"""The real reference sample: training images of the target class that the encoder never sees.

Every real-vs-real comparison of the stage (S_FID's FD(real, hold-out), the KID reference, the
PRDC real-vs-real coverage, the bins' real occupancy) needs real images that play the role the
synthetic images play: unseen by the feature extractor. Images the domain encoder was trained on
sit closer together in its feature space than unseen ones, which inflates FD(real train, hold-out)
and biased S_FID towards synthetic data (PneumoniaMNIST real-vs-real: 1.275 instead of ≈ 1.0).
So a seeded subset of the class's train images is held out of the encoder's training and used
as the reference; copy screening still compares against *all* train images.

Size: half of the class's train images (at least ``min_size``), independent of the cohort's
size so that one encoder per (dataset, class, seed) serves every cohort; S_FID then compares
N = min(#reference, #synthetic) images of each (``frechet.relative_similarity``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from synthcohort.core.seeding import derive_seed, numpy_rng

REFERENCE_FRACTION = 0.5


def reference_seed(validation_seed: int) -> int:
    """The reference sample's seed, derived from the validation's root seed
    (``ValidationConfig.seed``); an encoder passed to ``validate_arrays`` must exclude
    ``reference_indices(labels, class_index, seed=reference_seed(config.seed))``."""
    return derive_seed(validation_seed, "reference") % 2**31


def reference_indices(labels: np.ndarray, class_index: int, *, seed: int, min_size: int = 6) -> np.ndarray:
    """Sorted indices into the train split: a seeded ``REFERENCE_FRACTION`` of class
    ``class_index``'s images (at least ``min_size``, at most all of them)."""
    labels = np.asarray(labels).reshape(-1)
    members = np.flatnonzero(labels == class_index)
    n_ref = min(len(members), max(min_size, int(len(members) * REFERENCE_FRACTION)))
    return np.sort(numpy_rng(seed).choice(members, n_ref, replace=False))


def indices_fingerprint(indices: np.ndarray) -> str:
    """Content address of an index set (part of the encoder's cache key and name)."""
    idx = np.ascontiguousarray(np.sort(np.asarray(indices, dtype=np.int64)))
    return "ex-" + hashlib.sha256(idx.tobytes()).hexdigest()[:12]
