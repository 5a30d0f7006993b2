"""Deterministic stratified train/val/test assignment for data without an official split."""

from __future__ import annotations

import numpy as np

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.seeding import derive_seed, numpy_rng


def stratified_split(
    labels: np.ndarray, *, seed: int, val: float = 0.15, test: float = 0.15
) -> dict[str, np.ndarray]:
    """Indices of each split, stratified by class, the same for the same labels and seed.

    Each class is shuffled with its own sub-seed and cut into test (test·n rounded half up), val
    (val·n rounded half up) and train (the rest). A class with at least 3 samples keeps at least one
    in every split; smaller classes go to train first. Indices come back sorted.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise InvalidInputError(f"val={val} and test={test} must be fractions summing below 1", field="split")
    labels = np.asarray(labels)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        idx = idx[numpy_rng(derive_seed(seed, "stratified-split", int(c))).permutation(len(idx))]
        n = len(idx)
        n_test = int(np.floor(test * n + 0.5))  # half rounds up, not to even
        n_val = int(np.floor(val * n + 0.5))
        if n >= 3:
            n_test = max(n_test, 1 if test > 0 else 0)
            n_val = max(n_val, 1 if val > 0 else 0)
        while n_test + n_val >= n and n > 0 and (n_test or n_val):
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        out["test"].extend(idx[:n_test].tolist())
        out["val"].extend(idx[n_test : n_test + n_val].tolist())
        out["train"].extend(idx[n_test + n_val :].tolist())
    return {k: np.asarray(sorted(v), dtype=np.int64) for k, v in out.items()}


def split_origin(seed: int, val: float, test: float) -> str:
    return f"stratified seed={seed} val={val:g} test={test:g}"
