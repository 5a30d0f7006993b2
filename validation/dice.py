"""The Dice gate of mask-conditioned (typically 3D) cohorts.

DSC_syn = mean Dice of the real-trained segmenter's output on each synthetic image against its
conditioning mask; DSC_real = mean Dice on real hold-out image/mask pairs. Pass when
DSC_syn / DSC_real ≥ threshold (0.90 by default). Dice = 2|A∩B| / (|A| + |B|) (Dice 1945);
two empty masks count as 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synthcohort.core.seeding import numpy_rng
from synthcohort.validation.segmenter import segment, train_segmenter


def dice_scores(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-sample Dice of binary masks (N, 1, *spatial)."""
    p = pred.reshape(len(pred), -1) > 0
    t = target.reshape(len(target), -1) > 0
    inter = (p & t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1), 1.0)


@dataclass
class DiceResult:
    dsc_synthetic: float
    dsc_real: float
    ratio: float
    ci: tuple[float, float] | None
    per_sample: np.ndarray  # synthetic per-sample Dice


def dice_gate(
    train_images: np.ndarray,
    train_masks: np.ndarray,
    holdout_images: np.ndarray,
    holdout_masks: np.ndarray,
    synthetic_images: np.ndarray,
    synthetic_masks: np.ndarray,
    *,
    seed: int,
    epochs: int = 40,
    batch_size: int = 8,
    bootstrap: int = 200,
    net: torch.nn.Module | None = None,
) -> DiceResult:
    """Train the segmenter on real train pairs (unless ``net`` is one already trained on them),
    then score hold-out and synthetic pairs."""
    if net is None:
        net = train_segmenter(train_images, train_masks, seed=seed, epochs=epochs, batch_size=batch_size)
    d_real = dice_scores(segment(net, holdout_images), holdout_masks)
    d_syn = dice_scores(segment(net, synthetic_images), synthetic_masks)
    ratio = float(d_syn.mean() / max(d_real.mean(), 1e-12))
    ci = None
    if bootstrap > 0:
        rng = numpy_rng(seed)
        vals = [
            d_syn[rng.integers(0, len(d_syn), len(d_syn))].mean() / max(d_real[rng.integers(0, len(d_real), len(d_real))].mean(), 1e-12)
            for _ in range(bootstrap)
        ]
        ci = (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)))
    return DiceResult(float(d_syn.mean()), float(d_real.mean()), ratio, ci, d_syn)
