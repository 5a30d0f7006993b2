"""WGAN-GP: the gradient penalty is Gulrajani et al.'s, a short run on real BreastMNIST moves
samples towards the real class, and the 3D mask-conditioned pipeline writes volumes + masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthcohort.generators.base import Generator, GeneratorSpec
from synthcohort.generators.registry import get_generator
from synthcohort.generators.training import (
    list_models,
    load_model,
    sample_model,
    train_model,
)
from synthcohort.imaging.sample_dir import read_sample_dir
from synthcohort.validation.frechet import pixel_frechet_distance


def test_defaults_are_the_papers():
    cfg = get_generator("wgan-gp").Config()
    assert (cfg.gp_lambda, cfg.n_critic, cfg.lr, tuple(cfg.betas)) == (10.0, 5, 1e-4, (0.5, 0.9))


class _LinearCritic(torch.nn.Module):
    """f(x) = ⟨w, x⟩: its gradient is w everywhere, so the penalty is (‖w‖ − 1)² exactly."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x, y, m=None):
        return (x.flatten(1) * self.w).sum(1)


@pytest.mark.parametrize("norm", [0.25, 1.0, 3.0])
def test_gradient_penalty_is_squared_distance_of_the_gradient_norm_from_one(norm):
    model = get_generator("wgan-gp")(GeneratorSpec(2, 1, (8, 8), 2), seed=0)
    w = torch.randn(64)
    model.D = _LinearCritic(w / w.norm() * norm)
    x, x_tilde = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    gp = model.gradient_penalty(x, x_tilde, torch.zeros(4, dtype=torch.long), None)
    assert gp.item() == pytest.approx((norm - 1.0) ** 2, rel=1e-5, abs=1e-10)
    assert gp.requires_grad  # create_graph: the penalty trains the critic


def test_short_training_moves_samples_towards_the_real_minority_class(breast_train):
    """40 generator steps (200 critic steps) on all of BreastMNIST's train split, measured on
    class 0 (malignant): the pixel Fréchet distance must at least halve."""
    family = get_generator("wgan-gp")
    cfg = family.Config(batch_size=16, g_channels=16, d_channels=16, log_every=10)
    model = family(GeneratorSpec(2, 1, (28, 28), 2), cfg, seed=0)
    real = breast_train.images[breast_train.labels == 0]
    before = pixel_frechet_distance(real, model.sample(128, 0, seed=1))
    model.fit(breast_train, 40)
    after = pixel_frechet_distance(real, model.sample(128, 0, seed=1))
    assert after < 0.5 * before, (before, after)
    losses = [h["wasserstein"] for h in model.history]
    assert len(losses) == 4 and all(np.isfinite(losses))


TINY_3D = dict(batch_size=4, g_channels=8, d_channels=8, z_dim=16, embed_dim=8, n_critic=2, log_every=1)


def test_3d_mask_conditioned_pipeline_trains_resumes_and_writes_volumes_with_masks(tmp_path):
    from synthcohort.store.ingest import import_demo

    ds = import_demo(3, seed=0, size=16)
    assert ds.meta.has_masks and ds.meta.image_size == (16, 16, 16)
    # a job that dies after 2 steps and is redelivered with the same model id continues ...
    rec2 = train_model(ds.id, "lesion", "wgan-gp", steps=2, seed=3, mask=True, config=TINY_3D)
    assert rec2.status == "complete" and rec2.step == 2 and rec2.model_id.startswith("mdl-")
    rec3 = train_model(ds.id, "lesion", "wgan-gp", steps=3, seed=3, mask=True, config=TINY_3D,
                       model_id=rec2.model_id)
    assert rec3.step == 3 and rec3.created_at == rec2.created_at
    # ... to the same weights as 3 steps straight
    straight = train_model(ds.id, "lesion", "wgan-gp", steps=3, seed=3, mask=True, config=TINY_3D)
    g_resumed, _ = load_model(rec3.model_id, device="cpu")
    g_straight, _ = load_model(straight.model_id, device="cpu")
    for k in ("G", "D", "G_ema"):
        a, b = g_resumed.state_modules()[k].state_dict(), g_straight.state_modules()[k].state_dict()
        assert all(torch.equal(a[n], b[n]) for n in a), k
    assert {r.model_id for r in list_models()} == {rec3.model_id, straight.model_id}

    rows = sample_model(rec3.model_id, 3, seed=5, out_dir=tmp_path / "s")
    got = read_sample_dir(tmp_path / "s")
    assert got.images.shape == (3, 1, 16, 16, 16) and got.masks.shape == (3, 1, 16, 16, 16)
    assert [r["file"] for r in rows] == [f"images/{i:06d}.nii.gz" for i in range(3)]
    assert {r["class"] for r in rows} == {"lesion"}
    # masks are real train-split masks of the class, drawn by the seed
    train = ds.split("train")
    pool = train.masks[train.labels == ds.class_index("lesion")]
    for m in got.masks:
        assert any(np.array_equal(m, p) for p in pool)
    again = read_sample_dir(sample_model(rec3.model_id, 3, seed=5, out_dir=tmp_path / "t") and tmp_path / "t")
    assert np.array_equal(got.images, again.images) and np.array_equal(got.masks, again.masks)
    assert isinstance(g_resumed, Generator) and g_resumed.spec.mask_conditioned
