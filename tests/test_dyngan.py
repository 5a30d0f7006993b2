"""DynGAN-style GAN: a missed mode gets its own partition, seeded; training, resume, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthcohort.generators.base import Generator, GeneratorSpec, TrainingData
from synthcohort.generators.nets.dyngan_discriminator import DynGANDiscriminator
from synthcohort.generators.nets.dyngan_generator import DynGANGenerator
from synthcohort.generators.registry import get_generator
from synthcohort.validation.frechet import pixel_frechet_distance

TOY = dict(batch_size=16, z_dim=16, width=16, feature_dim=32, log_every=10, monitor_every=5,
           repartition_every=60)


def _squares(n: int, level: float, seed: int) -> np.ndarray:
    """16×16 images: a 6×6 square of intensity ``level`` at a random place on black, light noise."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, 16, 16), np.float32)
    for i in range(n):
        a, c = rng.integers(0, 10, 2)
        x[i, 0, a:a + 6, c:c + 6] = level
    return np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)


def _missed_mode_run(seed: int):
    """G learns dark squares only, is then frozen while the data hold dark and bright squares."""
    family = get_generator("dyngan")
    model = family(GeneratorSpec(2, 1, (16, 16), 1), family.Config(**TOY), seed=seed)
    dark, bright = _squares(64, 0.3, 1), _squares(64, 1.0, 2)
    model.fit(TrainingData(dark, np.zeros(64, np.int64)), 100)
    for group in model.opt_g.param_groups:
        group["lr"] = 0.0  # the generator keeps missing the bright mode
    model.fit(TrainingData(np.concatenate([dark, bright]), np.zeros(128, np.int64)), 240)
    return model


def test_missed_mode_becomes_a_new_partition_reproducibly():
    model = _missed_mode_run(seed=0)
    labels = model.partition_labels()  # monitored images in data order: 64 dark, then 64 bright
    assert model.partition_sizes()[0, :2].min() > 0, model.repartitions
    assert [h["partitions"] for h in model.history][-1] == 2.0
    assert max(h["collapsed"] for h in model.history) > model.config.tau
    new = labels == 1
    assert new[64:].sum() >= 16  # a good part of the bright mode moved ...
    assert new[:64].sum() <= 0.1 * new.sum()  # ... and the new partition is (almost) only bright
    # the generator is then asked for the new partition in proportion to its size
    probs = model._probs[0].cpu().numpy()
    assert probs[1] == pytest.approx(new.mean())

    again = _missed_mode_run(seed=0)
    assert np.array_equal(again.partition_labels(), labels)
    assert again.repartitions == model.repartitions


SMALL = dict(batch_size=16, z_dim=32, width=16, feature_dim=32, log_every=10, repartition_every=40)


@pytest.mark.parametrize("residual", [False, True], ids=["dcgan-blocks", "residual-blocks"])
def test_short_training_moves_samples_towards_real_malignant_images(breast_malignant, residual):
    family = get_generator("dyngan")
    model = family(GeneratorSpec(2, 1, (28, 28), 1), family.Config(**SMALL, residual=residual), seed=0)
    real = breast_malignant.images
    before = pixel_frechet_distance(real, model.sample(128, 0, seed=1))
    model.fit(breast_malignant, 80)
    sample = model.sample(128, 0, seed=1)
    after = pixel_frechet_distance(real, sample)
    assert sample.shape == (128, 1, 28, 28)
    assert after < 0.5 * before, (before, after)
    assert {"partitions", "collapsed", "p"} <= set(model.history[-1])


@pytest.mark.parametrize("residual", [False, True], ids=["dcgan-blocks", "residual-blocks"])
def test_nets_treat_each_image_on_its_own(residual):
    """An image's output, logit and features do not depend on the batch around it (monitoring
    and seeded sampling rely on it), and the residual stacks keep unit-scale activations at init."""
    torch.manual_seed(0)
    G = DynGANGenerator(z_dim=16, num_labels=3, resolution=32, img_channels=1, width=16, residual=residual)
    D = DynGANDiscriminator(num_labels=3, resolution=32, img_channels=1, width=16, residual=residual)
    z, y = torch.randn(6, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    seen: list[torch.Tensor] = []  # what the blocks hand to the output convolution
    G.to_img.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        x = G(z, y)
        assert x.shape == (6, 1, 32, 32) and x.abs().max() <= 1
        torch.testing.assert_close(G(z[2:3], y[2:3]), x[2:3])
        torch.testing.assert_close(D(x[2:3], y[2:3]), D(x, y)[2:3])
        torch.testing.assert_close(D.features(x[:1]), D.features(x)[:1])
    h = seen[0]
    assert 0.1 < h.std() < 10, h.std()  # neither vanishing nor exploding through the blocks
    with pytest.raises(ValueError, match="power of two"):
        DynGANGenerator(z_dim=16, num_labels=1, resolution=28, img_channels=1, residual=residual)


def _flat(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat(v, f"{prefix}.{i}")


def test_resume_across_a_repartition_equals_straight_training(tmp_path):
    """Partitions, smoothed logits and features live in the checkpoint: 50 + 30 == 80 steps."""
    family = get_generator("dyngan")
    cfg = family.Config(**{**TOY, "repartition_every": 25, "delta": 0.9})  # low bar: repartitions happen
    spec = GeneratorSpec(2, 1, (16, 16), 1)
    data = TrainingData(np.concatenate([_squares(32, 0.3, 1), _squares(32, 1.0, 2)]), np.zeros(64, np.int64))
    straight = family(spec, cfg, seed=4)
    straight.fit(data, 80)
    first = family(spec, cfg, seed=4)
    first.fit(data, 50, checkpoint_path=tmp_path / "ckpt.pt")
    resumed = Generator.load(tmp_path / "ckpt.pt")
    resumed.fit(data, 80)
    assert len(straight.repartitions) >= 2, straight.repartitions  # one before, one after the save
    assert resumed.repartitions == straight.repartitions
    for name, module in straight.state_modules().items():
        other = dict(_flat(resumed.state_modules()[name].state_dict()))
        for k, v in _flat(module.state_dict()):
            assert torch.equal(v, other[k]), (name, k)
    for k, v in _flat(straight.extra_state()):
        assert torch.equal(v, dict(_flat(resumed.extra_state()))[k]), k
    assert np.array_equal(straight.sample(8, 0, seed=2), resumed.sample(8, 0, seed=2))


def test_same_seed_is_bit_identical_and_another_seed_differs():
    family = get_generator("dyngan")
    spec = GeneratorSpec(2, 1, (16, 16), 2)
    data = TrainingData(np.concatenate([_squares(16, 0.3, 1), _squares(16, 1.0, 2)]),
                        np.array([0] * 16 + [1] * 16))
    a, b, c = (family(spec, family.Config(**TOY), seed=s) for s in (1, 1, 2))
    for m in (a, b, c):
        m.fit(data, 3)
    assert np.array_equal(a.sample(6, 1, seed=4), b.sample(6, 1, seed=4))
    assert not np.array_equal(a.sample(6, 1, seed=4), a.sample(6, 1, seed=5))
    assert not np.array_equal(a.sample(6, 1, seed=4), c.sample(6, 1, seed=4))
