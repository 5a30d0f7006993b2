"""Discriminator rejection sampling: exact on a known density ratio, seeded, and it keeps the
draws a real DynGAN's discriminator has learnt to tell from the data."""

from __future__ import annotations

import numpy as np
import pytest

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.seeding import numpy_rng
from synthcohort.generators.base import GeneratorSpec, TrainingData
from synthcohort.generators.registry import get_generator
from synthcohort.generators.rejection import RejectionError, drs_score, rejection_sample
from tests.test_dyngan import TOY, _squares


class GaussianModel:
    """p_g = N(0, 1) with the logit of an optimal D against p_d = N(1, 1): D̃(x) = x − ½."""

    name = "gaussian"

    def sample(self, n: int, class_index: int, *, seed: int) -> np.ndarray:
        return numpy_rng(seed).normal(0.0, 1.0, (n, 1, 1, 1)).astype(np.float32)

    def discriminator_logits(self, images: np.ndarray, class_index: int) -> np.ndarray:
        return images.reshape(len(images)).astype(np.float64) - 0.5


def test_score_is_the_logit_of_the_acceptance_ratio():
    d = np.array([-3.0, -1.0, 0.0, 1.9])
    f = drs_score(d, 2.0, eps=0.0)
    assert np.allclose(1 / (1 + np.exp(-f)), np.exp(d - 2.0))  # σ(F) = exp(D̃ − D̃_M) at γ = 0
    assert np.all(np.diff(f) > 0)
    assert np.isfinite(drs_score(np.array([2.0, 5.0]), 2.0)).all()  # at and above D̃_M: finite


def test_gamma_zero_samples_the_data_density():
    x, stats = rejection_sample(GaussianModel(), 3000, 0, seed=3, gamma=0.0, burn_in=2048, max_candidates=200_000)
    assert x.shape == (3000, 1, 1, 1)
    assert x.mean() == pytest.approx(1.0, abs=0.08)  # N(1, 1), not the proposal's N(0, 1)
    assert x.std() == pytest.approx(1.0, abs=0.08)
    # acceptance of exact rejection sampling is E[exp(D̃ − D̃_M)] = exp(½ − D̃_M)
    assert stats.acceptance_rate == pytest.approx(np.exp(-stats.d_max), rel=0.5)
    assert stats.percentile is None and stats.gamma == 0.0


def test_percentile_sets_the_acceptance_and_a_seed_the_draws():
    model = GaussianModel()
    lo, s_lo = rejection_sample(model, 500, 0, seed=1, percentile=50)
    hi, s_hi = rejection_sample(model, 500, 0, seed=1, percentile=95)
    assert s_hi.acceptance_rate < s_lo.acceptance_rate
    assert hi.mean() > lo.mean() > 0.3
    again, s_again = rejection_sample(model, 500, 0, seed=1, percentile=95)
    assert np.array_equal(again, hi) and s_again == s_hi
    other, _ = rejection_sample(model, 500, 0, seed=2, percentile=95)
    assert not np.array_equal(other, hi)


def test_bad_arguments_and_an_exhausted_budget_say_which_field():
    with pytest.raises(InvalidInputError, match="percentile"):
        rejection_sample(GaussianModel(), 10, 0, seed=0, percentile=100)
    with pytest.raises(InvalidInputError, match="n: must be at least 1"):
        rejection_sample(GaussianModel(), 0, 0, seed=0)
    with pytest.raises(RejectionError, match="accepted .* of .* draws"):
        rejection_sample(GaussianModel(), 1000, 0, seed=0, percentile=99.9, burn_in=64, max_candidates=2000)


def test_wgan_critic_is_refused():
    family = get_generator("wgan-gp")
    model = family(GeneratorSpec(2, 1, (16, 16), 1), family.Config(batch_size=8, g_channels=8, d_channels=8))
    with pytest.raises(InvalidInputError, match="rejection: wgan-gp has no logistic discriminator"):
        rejection_sample(model, 4, 0, seed=0)


def test_dyngan_logits_rank_real_above_generated_and_drs_keeps_the_higher():
    """The family's part: D̃ has the sign DRS needs (real images above the generator's draws
    after training), and the draws DRS keeps score above plain draws; same seed, same cohort."""
    family = get_generator("dyngan")
    model = family(GeneratorSpec(2, 1, (16, 16), 1), family.Config(**TOY), seed=0)
    real = np.concatenate([_squares(64, 0.3, 1), _squares(64, 1.0, 2)])
    model.fit(TrainingData(real, np.zeros(128, np.int64)), 150)

    plain = model.sample(256, 0, seed=5)
    d_plain = model.discriminator_logits(plain, 0)
    assert d_plain.shape == (256,) and np.isfinite(d_plain).all()
    assert model.discriminator_logits(real, 0).mean() > d_plain.mean()
    kept, stats = rejection_sample(model, 256, 0, seed=5, percentile=80, burn_in=512)
    assert kept.shape == plain.shape and kept.min() >= 0 and kept.max() <= 1
    assert stats.accepted == 256 and stats.candidates > 256 and 0 < stats.acceptance_rate < 1
    assert model.discriminator_logits(kept, 0).mean() > d_plain.mean()
    again, _ = rejection_sample(model, 256, 0, seed=5, percentile=80, burn_in=512)
    assert np.array_equal(again, kept)


def test_stylegan2_logits_are_its_discriminator_in_training_sized_groups():
    import torch

    from tests.test_stylegan2 import TINY

    family = get_generator("stylegan2")
    model = family(GeneratorSpec(2, 1, (28, 28), 2), family.Config(**TINY), seed=0)
    x = model.sample(2 * model.config.batch_size + 3, 1, seed=0)
    d = model.discriminator_logits(x, 1)
    assert d.shape == (len(x),) and np.isfinite(d).all()
    b = model.config.batch_size
    with torch.no_grad():
        first = model.D(model.canvas.pad(torch.as_tensor(x[:b]) * 2 - 1), torch.ones(b, dtype=torch.long))
    assert np.allclose(d[:b], first.numpy(), atol=1e-5)
    x2, _ = rejection_sample(model, 8, 1, seed=0, burn_in=b)
    assert x2.shape == (8, 1, 28, 28)
