"""The Dice gate on real 3D hippocampus MRI: real volumes with their own masks, standing in for a
synthetic cohort, pass it; the same volumes with shuffled masks fail it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthcohort.validation.dice import dice_gate, equal_step_epochs
from synthcohort.validation.segmenter import real_segmenter, train_segmenter

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


def test_dice_gate_own_masks_pass_shuffled_masks_fail(shared_data, tmp_path):
    x, m = load_pairs(shared_data / "hippocampus", 40)
    assert x.shape == (40, 1, *GRID) and 0.01 < m.mean() < 0.3
    tr, ho, syn = slice(0, 16), slice(16, 24), slice(24, 40)
    net = train_segmenter(x[tr], m[tr], seed=0, epochs=20, batch_size=4)
    own = dice_gate(x[tr], m[tr], x[ho], m[ho], x[syn], m[syn], seed=0, epochs=20, batch_size=4, bootstrap=100, net=net)
    assert own.dsc_real > 0.5  # the segmenter learnt the hippocampus
    assert own.ratio >= 0.9, own
    assert own.ci[0] <= own.ratio <= own.ci[1]
    assert own.ratio == pytest.approx(own.holdout_synthetic.mean() / own.holdout_real.mean())
    assert len(own.holdout_real) == 8 and len(own.fidelity) == 16 and own.fidelity_ratio > 0.9
    shuffled = np.roll(np.arange(16), 5)
    bad = dice_gate(x[tr], m[tr], x[ho], m[ho], x[syn], m[syn][shuffled], seed=0, epochs=20, batch_size=4,
                    bootstrap=100, net=net)
    assert bad.dsc_real == pytest.approx(own.dsc_real)  # the same real arm
    assert bad.ratio < 0.9 and bad.dsc_synthetic < own.dsc_synthetic, bad
    assert bad.fidelity_ratio < own.fidelity_ratio


def test_the_real_segmenter_is_cached_per_dataset_and_settings(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 8, 8, 8), dtype=np.float32)
    m = (x > 0.7).astype(np.uint8)
    first = real_segmenter(x, m, dataset_key="ds-a", seed=1, epochs=1, batch_size=2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("ds-a-*.pt"))) == 1
    again = real_segmenter(x, m, dataset_key="ds-a", seed=1, epochs=1, batch_size=2, cache_dir=tmp_path)
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    real_segmenter(x, m, dataset_key="ds-a", seed=2, epochs=1, batch_size=2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("ds-a-*.pt"))) == 2  # another seed is another segmenter


def test_equal_step_epochs_match_the_real_arms_optimiser_steps():
    assert equal_step_epochs(40, 182, 364) == 20 and equal_step_epochs(40, 182, 182) == 40
    assert equal_step_epochs(40, 10, 1000) == 1  # at least one epoch
