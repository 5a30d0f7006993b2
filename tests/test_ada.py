"""ADA (Karras et al. 2020): the augmentation pipeline and the adaptive probability p."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthcohort.generators.augment import AdaptiveP, AugmentPipe, bilinear_reflect
from synthcohort.generators.base import GeneratorSpec, TrainingData
from synthcohort.generators.registry import get_generator


def test_p_zero_is_identity_and_p_one_augments_every_image():
    x = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pipe = AugmentPipe()
    same = pipe(x, 0.0, torch.Generator().manual_seed(1))
    assert torch.allclose(same, x, atol=1e-5)
    changed = pipe(x, 1.0, torch.Generator().manual_seed(1))
    assert ((changed - x).abs().flatten(1).max(1).values > 1e-3).all()
    # seeded: the same generator state gives the same augmentation
    again = pipe(x, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(changed, again)


def test_flips_and_quarter_turns_are_exact_pixel_permutations():
    """Integer transforms must not blur: each output is the input flipped / rotated by k·90°."""
    x = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    pipe = AugmentPipe(xint=False, scale=False, rotate=False, brightness=False, contrast=False, cutout=False)
    y = pipe(x, 1.0, torch.Generator().manual_seed(2))
    candidates = []
    for flip in (False, True):
        base = x.flip(-1) if flip else x
        candidates += [torch.rot90(base, k, dims=(-2, -1)) for k in range(4)]
    for i in range(len(x)):
        err = min(float((y[i] - c[i]).abs().max()) for c in candidates)
        assert err < 1e-5, (i, err)
    assert not torch.allclose(y, x)  # with p = 1 most images moved


def test_warp_equals_grid_sample_and_is_twice_differentiable():
    """The gather-based warp matches grid_sample (reflection) and supports R1's double backward."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 20, 24, generator=g)
    theta = torch.randn(3, 2, 3, generator=g) * 0.5 + torch.eye(2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    assert torch.allclose(bilinear_reflect(x, grid), ref, atol=1e-5)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(bilinear_reflect(xr, grid).square().sum(), xr, create_graph=True)
    grad.square().sum().backward()
    assert xr.grad is not None and float(xr.grad.abs().sum()) > 0


def test_controller_moves_p_at_the_papers_speed_and_clamps():
    """p changes by batch·interval / (kimg·1000) per adjustment: 0 → 1 in 500k images by default."""
    ada = AdaptiveP(batch_size=32, interval=4)  # paper defaults: target 0.6, 500 kimg
    assert ada.target == 0.6 and ada.kimg == 500
    step = 32 * 4 / 500_000
    for _ in range(4):
        ada.observe(torch.ones(32))  # D confident on every real image: r_t = 1
        ada.update()
    assert float(ada.p) == pytest.approx(step) and float(ada.r_t) == 1.0
    for _ in range(8):
        ada.observe(-torch.ones(32))  # r_t = -1 < 0.6: p goes down and clamps at 0
        ada.update()
    assert float(ada.p) == 0.0
    fast = AdaptiveP(batch_size=32, interval=4, kimg=8.192)  # 128 images per adjustment = 1/64
    for i in range(64 * 4):
        fast.observe(torch.ones(4))
        fast.update()
        if i == 63 * 4 - 1:
            assert float(fast.p) == pytest.approx(63 / 64)
    assert float(fast.p) == 1.0
    fast.observe(torch.ones(4))
    for _ in range(4):
        fast.update()
    assert float(fast.p) == 1.0  # clamped
    # state round trip
    other = AdaptiveP(batch_size=32, interval=4)
    other.load_state_dict(ada.state_dict())
    assert float(other.p) == float(ada.p) and other._calls == ada._calls


TINY = dict(batch_size=8, z_dim=16, w_dim=16, channel_base=128, channel_max=16, log_every=5, ada_kimg=0.4,
            style_mixing=0.0)


def _frozen_generator_run(images: np.ndarray, steps: int, seed: int = 0):
    """Train only D (G's learning rate 0): how confident D gets on the training reals decides p."""
    family = get_generator("stylegan2")
    model = family(GeneratorSpec(2, 1, tuple(images.shape[-2:]), 1), family.Config(**TINY), seed=seed)
    for group in model.opt_g.param_groups:
        group["lr"] = 0.0
    model.fit(TrainingData(images, np.zeros(len(images), np.int64)), steps)
    return model


def test_p_rises_when_D_overfits_a_tiny_set_and_stays_near_zero_when_it_cannot(shared_data):
    """32 real BreastMNIST images vs. a frozen generator: D tells them apart, r_t > 0.6, p rises
    (and is logged). Reals drawn from that same frozen generator (2048 of them): D cannot tell
    them apart, r_t stays under the target and p stays near 0."""
    with np.load(shared_data / "medmnist" / "breastmnist.npz") as z:
        tiny = torch.from_numpy(z["train_images"][:32, None].astype(np.float32) / 255.0)
    # 32×32, the network's own size, so that no canvas padding tells reals from fakes
    tiny = F.interpolate(tiny, size=(32, 32), mode="bilinear", align_corners=False).numpy()
    overfit = _frozen_generator_run(tiny, 60)
    p_over = [h["p"] for h in overfit.history]

    with torch.no_grad():  # the frozen generator's own images, unclamped: same distribution as its fakes
        g = _frozen_generator_run(tiny, 0).G
        own = ((g(torch.zeros(2048, dtype=torch.long), torch.Generator().manual_seed(5)) + 1) / 2).numpy()
    matched = _frozen_generator_run(own, 60)
    p_matched = [h["p"] for h in matched.history]

    assert p_over[-1] >= 0.3, p_over
    assert max(p_matched) <= 0.1, p_matched
    assert float(overfit.extra_state()["ada"]["p"]) == pytest.approx(p_over[-1])


def test_p_rises_on_a_tiny_real_set_and_stays_at_zero_on_a_large_one(shared_data):
    """The issue's case with both networks training: the same StyleGAN2 (same seed and config) on 8
    versus 4,708 PneumoniaMNIST images. D memorises the 8, r_t runs above the 0.6 target and p
    climbs until the controller holds r_t at the target; on the full split D cannot memorise, r_t
    falls under the target and p is driven back to 0. Measured
    (benchmarks/ada_overfitting.py --tiny 8 --steps 500 --ada-kimg 5): mean p over the last quarter
    0.079 vs 0.001; with 32 images, 1,200 steps and ada_kimg 10: 0.080 vs 0.000. Here (400 steps):
    r_t over the whole tiny run 0.630; over the last quarter 0.600 (tiny, the held equilibrium)
    and 0.513 (large)."""
    with np.load(shared_data / "medmnist" / "pneumoniamnist.npz") as z:
        large = z["train_images"][:, None].astype(np.float32) / 255.0
    tiny = large[np.sort(np.random.default_rng(0).choice(len(large), 8, replace=False))]
    config = dict(z_dim=64, w_dim=64, channel_base=512, channel_max=64, batch_size=16, ada_kimg=5.0, log_every=10)
    family = get_generator("stylegan2")
    runs = {}
    for name, images in (("tiny", tiny), ("large", large)):
        model = family(GeneratorSpec(2, 1, (28, 28), 1), family.Config(**config), seed=0)
        model.fit(TrainingData(images, np.zeros(len(images), np.int64)), 400)
        runs[name] = model.history
    last = {k: h[-len(h) // 4:] for k, h in runs.items()}
    p = {k: float(np.mean([r["p"] for r in h])) for k, h in last.items()}
    r_t = {k: float(np.mean([r["r_t"] for r in h])) for k, h in last.items()}
    r_t_tiny_run = float(np.mean([r["r_t"] for r in runs["tiny"]]))  # what drove p up
    assert p["tiny"] >= 0.03 and p["large"] <= 0.01, (p, r_t)
    # Once p holds steady on the tiny set, the controller keeps r_t at the target, so the last
    # quarter sits at 0.6 (not above it); over the run it was above, and on the large set below.
    assert r_t_tiny_run > 0.6 > r_t["large"], (r_t_tiny_run, r_t)
    assert r_t["tiny"] > r_t["large"], r_t
