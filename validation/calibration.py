"""Real-vs-real calibration: how the gates judge real images at a class's size.

A gate that real images fail is too noisy to judge a generator at that size. The split used
everywhere for this (tests, ``benchmarks/real_vs_real.py``): the class's train+val images are
shuffled with a seed and halved; one half stays in the training split, where the stage draws
its reference sample and trains its encoder, the other half stands in for the synthetic cohort;
the real test split stays the hold-out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthcohort.validation.pipeline import RealSplit


@dataclass
class RealVsReal:
    train: RealSplit
    val: RealSplit
    test: RealSplit
    cohort: np.ndarray  # real images of the class, unseen by the training split


def real_vs_real_split(
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    class_index: int,
    *,
    seed: int,
    max_other: int | None = None,
) -> RealVsReal:
    """``splits`` maps "train"/"val"/"test" to (images, labels). ``max_other`` caps the other
    classes' images kept in the training split (seeded), to bound a test's run time."""
    (trx, tr_y), (vax, va_y), (tex, te_y) = (splits[k] for k in ("train", "val", "test"))
    x = np.concatenate([trx, vax])
    y = np.concatenate([np.asarray(tr_y).reshape(-1), np.asarray(va_y).reshape(-1)]).astype(np.int64)
    rng = np.random.default_rng(seed)
    minority = rng.permutation(np.flatnonzero(y == class_index))
    other = rng.permutation(np.flatnonzero(y != class_index))[:max_other]
    half = len(minority) // 2
    keep = np.sort(np.concatenate([minority[:half], other]))
    return RealVsReal(
        train=RealSplit(x[keep], y[keep], sample_ids=[f"real-{i}" for i in keep]),
        val=RealSplit(vax, np.asarray(va_y).reshape(-1).astype(np.int64)),
        test=RealSplit(tex, np.asarray(te_y).reshape(-1).astype(np.int64)),
        cohort=x[minority[half:]],
    )
