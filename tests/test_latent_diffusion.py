"""Latent diffusion: registered with a bounded config; its two phases (autoencoder, then the latent
denoiser) resume bit for bit from a checkpoint taken in either; the autoencoder phase learns to
reconstruct; seeded 3D mask-conditioned sampling follows the mask and reaches the sample dir."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthcohort.core.errors import InvalidInputError
from synthcohort.generators.base import Generator, GeneratorSpec, TrainingData
from synthcohort.generators.configs import LatentDiffusionConfig, estimate_training_bytes, parse_config
from synthcohort.generators.registry import get_generator
from synthcohort.validation.dice import dice_scores
from tests.test_generator_interface import _assert_equal_states, _states

TINY = dict(batch_size=2, ae_steps=2, ae_channels=(8, 8), ae_norm_num_groups=4, latent_channels=2,
            channels=(8, 16), attention_levels=(False, False), norm_num_groups=4, head_channels=8,
            sampling_steps=3, eta=1.0, p_uncond=0.2, guidance_scale=2.0, log_every=1)
SIDE = 16
SPEC = GeneratorSpec(spatial_dims=3, in_channels=1, image_size=(SIDE, SIDE, SIDE), num_classes=2,
                     mask_conditioned=True)


def _blobs(n: int, seed: int = 0) -> TrainingData:
    """n volumes of one bright ellipsoid on a dim noisy background, its mask, classes alternating."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(SIDE),) * 3, indexing="ij"), -1).astype(np.float32)
    images, masks = [], []
    for _ in range(n):
        centre = rng.uniform(5, SIDE - 5, 3)
        radii = rng.uniform(2.5, 4.5, 3)
        m = (((grid - centre) / radii) ** 2).sum(-1) <= 1.0
        x = 0.2 + 0.05 * rng.standard_normal((SIDE,) * 3) + 0.6 * m
        images.append(np.clip(x, 0, 1)[None])
        masks.append(m[None])
    return TrainingData(np.asarray(images, np.float32), np.arange(n) % 2,
                        np.asarray(masks, np.uint8), class_names=("a", "b"))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _make(**cfg) -> Generator:
    family = get_generator("latent-diffusion")
    return family(SPEC, family.Config(**{**TINY, **cfg}), seed=0)


def test_registered_with_a_bounded_config_whose_errors_name_the_field():
    family = get_generator("latent-diffusion")
    assert family.name == "latent-diffusion" and family.Config is LatentDiffusionConfig
    for fields, field in (({"ae_steps": 0}, "config.ae_steps"), ({"kl_weight": 2.0}, "config.kl_weight"),
                          ({"latent_channels": 0}, "config.latent_channels"), ({"vae": 1}, "config.vae"),
                          ({"ae_channels": []}, "config.ae_channels"),
                          ({"ae_likelihood": "gaussian"}, "config.ae_likelihood")):
        with pytest.raises(InvalidInputError) as err:
            parse_config("latent-diffusion", fields)
        assert err.value.field == field, (fields, err.value.field)
    with pytest.raises(InvalidInputError, match="ae_norm_num_groups"):
        parse_config("latent-diffusion", {"ae_channels": (12, 16)})
    # the estimate counts the full-resolution autoencoder: wider or bigger batches cost more
    size = (32, 48, 32)
    base = estimate_training_bytes("latent-diffusion", parse_config("latent-diffusion", {}), channels=1,
                                   image_size=size)
    wide = estimate_training_bytes("latent-diffusion", parse_config("latent-diffusion", {"ae_channels": (64, 64)}),
                                   channels=1, image_size=size)
    assert 0 < base < wide


@pytest.mark.parametrize("saved_at", [1, 2, 3])  # mid-autoencoder, at the switch, mid-diffusion
def test_resume_in_either_phase_equals_a_straight_run(saved_at, tmp_path):
    data = _blobs(6)
    first = _make()
    first.fit(data, saved_at, checkpoint_path=tmp_path / "ckpt.pt")
    resumed = Generator.load(tmp_path / "ckpt.pt")
    assert resumed.step == saved_at and resumed.scale == first.scale
    resumed.fit(data, 4)
    straight = _make()
    straight.fit(data, 4)
    assert straight.scale is not None and resumed.scale == straight.scale
    _assert_equal_states(_states(resumed), _states(straight))
    strip = [{k: v for k, v in h.items() if k != "images_per_s"} for h in straight.history]
    assert [{k: v for k, v in h.items() if k != "images_per_s"} for h in resumed.history] == strip
    assert set(strip[0]) == {"step", "loss", "recon_l1", "kl"} and set(strip[-1]) == {"step", "loss", "grad_norm"}


def test_the_autoencoder_is_frozen_in_the_diffusion_phase():
    model = _make()
    model.fit(_blobs(6), 2)
    ae = {k: v.clone() for k, v in model.ae.state_dict().items()}
    eps = {k: v.clone() for k, v in model.eps_model.state_dict().items()}
    model.fit(_blobs(6), 4)
    assert all(torch.equal(ae[k], v) for k, v in model.ae.state_dict().items())
    assert any(not torch.equal(eps[k], v) for k, v in model.eps_model.state_dict().items())


def test_the_autoencoder_phase_reduces_reconstruction_error():
    data = _blobs(8)
    model = _make(ae_steps=40, ae_lr=2e-3, batch_size=4, log_every=40)
    x = torch.from_numpy(data.images) * 2 - 1

    def error() -> float:
        with torch.no_grad():
            mu, _ = model.ae.encode(x)
            return float((model.ae.decode(mu) - x).abs().mean())

    before = error()
    model.fit(data, 40)
    after = error()
    assert model.scale is None  # still in the autoencoder phase
    assert after < 0.3 * before, (before, after)  # measured: 0.88 → 0.12


def test_sampling_is_seeded_in_range_and_follows_the_mask():
    data = _blobs(6)
    model = _make()
    model.fit(data, 4)
    masks = data.masks[:3]
    a = model.sample(3, 0, seed=5, masks=masks)
    b = model.sample(3, 0, seed=5, masks=masks)
    assert a.shape == (3, 1, SIDE, SIDE, SIDE) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, b)
    assert np.abs(a - model.sample(3, 0, seed=6, masks=masks)).mean() > 1e-4
    assert np.abs(a - model.sample(3, 0, seed=5, masks=1 - masks)).mean() > 1e-4
    with pytest.raises(ValueError, match="mask"):
        model.sample(1, 0, seed=5)


def test_2d_sizes_that_do_not_divide_the_down_sampling_are_padded():
    family = get_generator("latent-diffusion")
    model = family(GeneratorSpec(2, 1, (13, 10), 2), family.Config(**{**TINY, "ae_channels": (8, 8, 8)}), seed=0)
    assert model.ae.latent_size == (4, 3)
    images = np.random.default_rng(0).random((4, 1, 13, 10)).astype(np.float32)
    model.fit(TrainingData(images, np.array([0, 1, 0, 1])), 3)
    assert model.sample(2, 1, seed=0).shape == (2, 1, 13, 10)


def test_3d_mask_conditioned_model_writes_its_masks_to_the_sample_dir(tmp_path):
    from synthcohort.generators.training import sample_model, train_model
    from synthcohort.imaging.sample_dir import read_sample_dir
    from synthcohort.store.ingest import import_demo

    ds = import_demo(3, seed=0, size=16)
    rec = train_model(ds.id, "lesion", "latent-diffusion", steps=3, seed=0, mask=True, config=TINY)
    assert rec.mask_conditioned and rec.status == "complete"
    sample_model(rec.model_id, 2, seed=9, out_dir=tmp_path / "a")
    sample_model(rec.model_id, 2, seed=9, out_dir=tmp_path / "b")
    a, b = read_sample_dir(tmp_path / "a"), read_sample_dir(tmp_path / "b")
    assert a.images.shape == (2, 1, 16, 16, 16) and a.masks.shape == (2, 1, 16, 16, 16)
    assert set(np.unique(a.masks)) <= {0, 1} and a.masks.any()
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert all(r["mask_file"] for r in a.rows)


def _sparse_shapes(n: int, seed: int = 0) -> TrainingData:
    """n binary volumes, each one small ellipsoid on under 1 % of the grid (as AdrenalMNIST3D's shapes)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(SIDE),) * 3, indexing="ij"), -1).astype(np.float32)
    x = np.asarray([((((grid - rng.uniform(5, SIDE - 5, 3)) / rng.uniform(1.5, 2.5, 3)) ** 2).sum(-1) <= 1)[None]
                    for _ in range(n)], np.float32)
    return TrainingData(x, np.arange(n) % 2, x.astype(np.uint8), class_names=("a", "b"))


def test_a_bernoulli_decoder_learns_sparse_binary_shapes_where_an_l1_one_learns_the_empty_volume():
    data = _sparse_shapes(8)
    target = data.images > 0.5

    def shape_dice(likelihood: str) -> np.ndarray:
        model = _make(ae_steps=80, ae_lr=2e-3, batch_size=4, log_every=80, ae_likelihood=likelihood)
        model.fit(data, 80)
        assert set(model.history[0]) >= {"recon_bce" if likelihood == "bernoulli" else "recon_l1"}
        with torch.no_grad():
            mu, _ = model.ae.encode(torch.from_numpy(data.images) * 2 - 1)
            x_hat = (model.decode_image(mu).numpy() + 1) / 2
        if likelihood == "bernoulli":  # 2σ(logits) − 1 stays in the image range
            assert x_hat.min() >= 0.0 and x_hat.max() <= 1.0
        return dice_scores(x_hat > 0.5, target)

    assert shape_dice("laplace").max() == 0.0  # measured: no voxel above 0.5, the median of almost every voxel
    assert shape_dice("bernoulli").min() > 0.6  # measured: 0.81–0.93 after 80 steps
