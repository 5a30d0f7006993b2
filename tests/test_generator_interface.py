"""The generator interface as every caller uses it: registry, seeded sampling, checkpoints,
exact resume, EMA. Runs the WGAN-GP and diffusion families on a small real subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthcohort.core.errors import InvalidInputError
from synthcohort.generators.base import Generator, GeneratorSpec, TrainingData
from synthcohort.generators.ema import EMA
from synthcohort.generators.registry import available, get_generator

TINY = {
    "wgan-gp": dict(batch_size=8, g_channels=8, d_channels=8, z_dim=16, embed_dim=8, n_critic=2, log_every=1),
    # η > 0 and guidance on, so the seeded-noise and guidance paths are what is checked
    "diffusion": dict(batch_size=8, channels=(8, 16), attention_levels=(False, False), norm_num_groups=4,
                      head_channels=8, sampling_steps=4,
                      eta=0.5, p_uncond=0.2, guidance_scale=2.0, log_every=1),
}
SPEC = GeneratorSpec(spatial_dims=2, in_channels=1, image_size=(28, 28), num_classes=2)


@pytest.fixture(scope="module")
def breast(breast_train) -> TrainingData:
    """64 real BreastMNIST training images of both classes (0 malignant, 1 normal/benign)."""
    return TrainingData(breast_train.images[:64], breast_train.labels[:64], class_names=breast_train.class_names)


def _make(name: str, seed: int = 0) -> Generator:
    family = get_generator(name)
    return family(SPEC, family.Config(**TINY[name]), device="cpu", seed=seed)


def _states(model: Generator) -> dict[str, object]:
    return {k: m.state_dict() for k, m in model.state_modules().items()}


def _assert_equal_states(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"differs at {where}"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"keys differ at {where}"
        for k in a:
            _assert_equal_states(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"lengths differ at {where}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_states(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{a!r} != {b!r} at {where}"


def test_registry_lists_both_families_and_rejects_unknown_names():
    names = available()
    assert {"wgan-gp", "diffusion"} <= set(names)
    assert get_generator("wgan-gp").name == "wgan-gp"
    assert get_generator("diffusion").name == "diffusion"
    with pytest.raises(InvalidInputError) as exc:
        get_generator("wgan")
    assert exc.value.field == "generator"
    assert "wgan" in exc.value.message and "wgan-gp" in exc.value.message


@pytest.mark.parametrize("name", ["wgan-gp", "diffusion"])
def test_resume_equals_straight_run_and_sampling_is_seeded(name, breast, tmp_path):
    # N = 2 steps, save, resume for M = 2 more ...
    first = _make(name)
    first.fit(breast, 2, checkpoint_path=tmp_path / "ckpt.pt")
    resumed = Generator.load(tmp_path / "ckpt.pt")
    assert type(resumed) is type(first) and resumed.step == 2
    resumed.fit(breast, 4)
    # ... equals N + M = 4 steps straight, bit for bit (weights, EMA, optimiser moments)
    straight = _make(name)
    straight.fit(breast, 4)
    assert resumed.step == straight.step == 4
    _assert_equal_states(_states(resumed), _states(straight))
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    for h_r, h_s in zip(resumed.history, straight.history):
        assert {k: v for k, v in h_r.items() if k != "images_per_s"} == \
            {k: v for k, v in h_s.items() if k != "images_per_s"}

    # seeded sampling: same seed → same bits (also across save/load), another seed → other images
    a = straight.sample(5, 0, seed=7)
    b = straight.sample(5, 0, seed=7)
    c = resumed.sample(5, 0, seed=7)
    d = straight.sample(5, 0, seed=8)
    assert a.shape == (5, 1, 28, 28) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert np.abs(a - d).mean() > 1e-3
    # the class label reaches the output
    assert np.abs(a - straight.sample(5, 1, seed=7)).mean() > 1e-4


def test_a_different_training_seed_gives_different_weights(breast):
    a, b = _make("wgan-gp", seed=0), _make("wgan-gp", seed=1)
    a.fit(breast, 1)
    b.fit(breast, 1)
    wa, wb = a.G.to_image.weight, b.G.to_image.weight
    assert not torch.equal(wa, wb)


@pytest.mark.parametrize("name", ["wgan-gp", "diffusion"])
def test_mask_conditioned_model_needs_masks_and_follows_them(name):
    family = get_generator(name)
    spec = GeneratorSpec(spatial_dims=2, in_channels=1, image_size=(16, 16), num_classes=2, mask_conditioned=True)
    model = family(spec, family.Config(**TINY[name]), seed=0)
    with pytest.raises(ValueError, match="mask"):
        model.sample(2, 0, seed=0)
    empty = np.zeros((2, 1, 16, 16), np.uint8)
    full = np.ones((2, 1, 16, 16), np.uint8)
    assert np.abs(model.sample(2, 0, seed=0, masks=empty) - model.sample(2, 0, seed=0, masks=full)).mean() > 1e-4


def test_ema_warms_up_then_averages_with_the_configured_decay():
    net = torch.nn.Linear(3, 1, bias=False)
    ema = EMA(net, decay=0.99)
    assert ema.current_decay(0) == pytest.approx(1 / 10)
    assert ema.current_decay(10) == pytest.approx(11 / 20)
    assert ema.current_decay(10_000) == pytest.approx(0.99)
    start = ema.shadow.weight.detach().clone()
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net, 0)  # d = 0.1: shadow = 0.1 · start + 0.9 · 1
    assert torch.allclose(ema.shadow.weight, 0.1 * start + 0.9)
    assert not ema.shadow.weight.requires_grad
    before = ema.shadow.weight.detach().clone()
    with torch.no_grad():
        net.weight.fill_(-1.0)
    ema.update(net, 10_000)  # d = 0.99
    assert torch.allclose(ema.shadow.weight, 0.99 * before - 0.01)
