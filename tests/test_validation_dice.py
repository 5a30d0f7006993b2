"""The Dice gate on real 3D hippocampus MRI: own masks pass, shuffled masks fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthcohort.validation.dice import dice_gate
from synthcohort.validation.segmenter import train_segmenter

pytestmark = pytest.mark.shared_data

GRID = (32, 48, 32)  # the import default for these 35×50×36 crops; at half size (16×24×16) the
# masks of different patients overlap so much that shuffled masks scored 0.90 of the real Dice


def load_pairs(root, n):
    import nibabel as nib

    images, masks = [], []
    for path in sorted((root / "images").glob("hippocampus_*.nii.gz"))[:n]:
        def resized(p, mode):
            a = torch.from_numpy(np.asarray(nib.load(str(p)).get_fdata(dtype=np.float32)))[None, None]
            return torch.nn.functional.interpolate(a, size=GRID, mode=mode)[0].numpy()

        im = resized(path, "trilinear")
        lo, hi = np.percentile(im, [0.5, 99.5])
        images.append(np.clip((im - lo) / (hi - lo), 0, 1).astype(np.float32))
        masks.append((resized(root / "labels" / path.name, "nearest") > 0).astype(np.uint8))
    return np.stack(images), np.stack(masks)


def test_dice_gate_own_masks_pass_shuffled_masks_fail(shared_data):
    x, m = load_pairs(shared_data / "hippocampus", 32)
    assert x.shape == (32, 1, *GRID) and 0.01 < m.mean() < 0.3
    tr, ho, syn = slice(0, 16), slice(16, 24), slice(24, 32)
    net = train_segmenter(x[tr], m[tr], seed=0, epochs=20, batch_size=4)
    own = dice_gate(x[tr], m[tr], x[ho], m[ho], x[syn], m[syn], seed=0, bootstrap=100, net=net)
    assert own.dsc_real > 0.5  # the segmenter learnt the hippocampus
    assert own.ratio >= 0.9, own
    assert own.ci[0] <= own.ratio <= own.ci[1]
    shuffled = np.roll(np.arange(8), 3)
    bad = dice_gate(x[tr], m[tr], x[ho], m[ho], x[syn], m[syn][shuffled], seed=0, bootstrap=100, net=net)
    assert bad.dsc_real == pytest.approx(own.dsc_real)
    assert bad.ratio < 0.9 and bad.dsc_synthetic < own.dsc_synthetic
