"""The Dice gate of mask-conditioned (typically 3D) cohorts: train on synthetic, test on real.

The standard's DSC ratio (as Med-DDPM, Dorjsembe et al., IEEE JBHI 2024, reports it):

    DSC_real = mean Dice on the real hold-out of a segmenter trained on the real train pairs
    DSC_syn  = mean Dice on the same hold-out of a segmenter trained on the synthetic pairs
    ratio    = DSC_syn / DSC_real                                                          (1)

Pass when ratio ≥ threshold (0.90 by default). Both segmenters share one seed (initialisation
and batch order) and take the same number of optimiser steps, so the ratio measures the data,
not the training budget. The CI is a paired percentile bootstrap over hold-out volumes.

Mask fidelity, reported beside the gate and not part of it: the real-trained segmenter's Dice on
each synthetic image against its conditioning mask, over DSC_real. It says how plainly each image
shows its mask to a model that learnt anatomy from real data; a cohort can train segmenters well
(1) while its images show their masks less crisply than real ones (benchmarks/RESULTS.md, 3D).

Dice = 2|A∩B| / (|A| + |B|) (Dice 1945); two empty masks count as 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthcohort.core.seeding import numpy_rng
from synthcohort.validation.encoder import state_dict_sha256
from synthcohort.validation.segmenter import real_segmenter, segment, train_segmenter


def dice_scores(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-sample Dice of binary masks (N, 1, *spatial)."""
    p = pred.reshape(len(pred), -1) > 0
    t = target.reshape(len(target), -1) > 0
    inter = (p & t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1), 1.0)


def equal_step_epochs(epochs: int, n_reference: int, n: int) -> int:
    """Epochs over ``n`` pairs that take the optimiser steps of ``epochs`` over ``n_reference``."""
    return max(1, round(epochs * n_reference / max(n, 1)))


def paired_ci(num: np.ndarray, den: np.ndarray, stat: Callable[[np.ndarray, np.ndarray], float], *, seed: int,
              bootstrap: int) -> tuple[float, float] | None:
    """95 % percentile bootstrap of ``stat(num, den)``, resampling the pairs (both arms scored on
    the same volumes); None without resamples."""
    if bootstrap <= 0:
        return None
    rng = numpy_rng(seed)
    vals = [stat(num[i], den[i]) for i in (rng.integers(0, len(num), len(num)) for _ in range(bootstrap))]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def mean_ratio(num: np.ndarray, den: np.ndarray) -> float:
    return float(num.mean() / max(den.mean(), 1e-12))


@dataclass
class DiceResult:
    dsc_synthetic: float  # DSC_syn of (1): the synthetic-trained segmenter on the real hold-out
    dsc_real: float  # DSC_real of (1)
    ratio: float
    ci: tuple[float, float] | None
    holdout_real: np.ndarray  # per hold-out volume Dice, real-trained segmenter
    holdout_synthetic: np.ndarray  # per hold-out volume Dice, synthetic-trained segmenter
    fidelity: np.ndarray  # per synthetic sample: real-trained segmenter's Dice against its mask
    synthetic_epochs: int  # the synthetic arm's epochs: the real arm's optimiser steps (equal_step_epochs)
    segmenters: list[dict[str, str]]  # name and weights' sha256 of both, for the report's provenance

    @property
    def fidelity_ratio(self) -> float:
        return float(self.fidelity.mean() / max(self.dsc_real, 1e-12))


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
    dataset_key: str | None = None,
    cache_dir: Path | None = None,
) -> DiceResult:
    """Equation (1) with its CI, and the mask fidelity of every synthetic sample.

    ``net``: a segmenter already trained on the real train pairs with this seed, epochs and batch
    size; otherwise it comes from ``real_segmenter``'s cache (keyed by ``dataset_key``)."""
    if net is None:
        net = real_segmenter(train_images, train_masks, dataset_key=dataset_key, seed=seed, epochs=epochs,
                             batch_size=batch_size, cache_dir=cache_dir)
    syn_epochs = equal_step_epochs(epochs, len(train_images), len(synthetic_images))
    syn_net = train_segmenter(synthetic_images, synthetic_masks, seed=seed, epochs=syn_epochs, batch_size=batch_size)
    d_real = dice_scores(segment(net, holdout_images), holdout_masks)
    d_syn = dice_scores(segment(syn_net, holdout_images), holdout_masks)
    fidelity = dice_scores(segment(net, synthetic_images), synthetic_masks)
    ratio = mean_ratio(d_syn, d_real)
    ci = paired_ci(d_syn, d_real, mean_ratio, seed=seed, bootstrap=bootstrap)
    segmenters = [{"name": f"dice-segmenter({arm}, epochs={e}, batch={batch_size}, seed={seed}, data={data})",
                   "sha256": state_dict_sha256(n)}
                  for arm, e, n, data in (("real", epochs, net, dataset_key or "train pairs"),
                                          ("synthetic", syn_epochs, syn_net, "cohort"))]
    return DiceResult(float(d_syn.mean()), float(d_real.mean()), ratio, ci, d_real, d_syn, fidelity, syn_epochs,
                      segmenters)
