"""StyleGAN2 (+ADA): modulated convolution, training on real BreastMNIST, exact resume, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthcohort.core.errors import InvalidInputError
from synthcohort.generators.base import Generator, GeneratorSpec, TrainingData
from synthcohort.generators.nets.stylegan2_generator import ModulatedConv2d
from synthcohort.generators.registry import get_generator
from synthcohort.validation.frechet import pixel_frechet_distance

TINY = dict(batch_size=8, z_dim=16, w_dim=16, channel_base=128, channel_max=16, log_every=1)


def test_grouped_modulated_conv_equals_per_sample_convolution():
    """The fused (grouped) form equals modulating, demodulating and convolving each sample alone."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 6, 3, w_dim=5)
    x, w = torch.randn(3, 4, 8, 8), torch.randn(3, 5)
    fused = conv(x, w)
    s = conv.affine(w)
    for i in range(3):
        wi = conv.weight * conv.weight_gain * s[i][None, :, None, None]
        wi = wi / wi.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        ref = F.conv2d(x[i:i + 1], wi, padding=1)
        assert torch.allclose(fused[i:i + 1], ref, atol=1e-5)


def test_short_training_moves_samples_towards_real_malignant_images(breast_malignant):
    family = get_generator("stylegan2")
    model = family(GeneratorSpec(2, 1, (28, 28), 1), family.Config(**{**TINY, "log_every": 10}), seed=0)
    real = breast_malignant.images
    before = pixel_frechet_distance(real, model.sample(128, 0, seed=1))
    model.fit(breast_malignant, 60)
    sample = model.sample(128, 0, seed=1)
    after = pixel_frechet_distance(real, sample)
    assert sample.shape == (128, 1, 28, 28) and sample.min() >= 0 and sample.max() <= 1
    assert after < 0.5 * before, (before, after)
    assert {"loss_d", "loss_g", "r1", "p"} <= set(model.history[-1])


def _state(model: Generator) -> dict[str, torch.Tensor]:
    flat = {}
    for name, module in model.state_modules().items():
        for k, v in _tensors(module.state_dict()):
            flat[f"{name}.{k}"] = v
    for k, v in _tensors(model.extra_state()):
        flat[f"extra.{k}"] = v
    return flat


def _tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}")


def _assert_same_state(a: Generator, b: Generator) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_resume_equals_straight_training_bit_for_bit(breast_malignant, tmp_path):
    """R1 (every 2nd step), path length (every 2nd), mixing and a moving p are all exercised."""
    family = get_generator("stylegan2")
    cfg = family.Config(**{**TINY, "r1_interval": 2, "pl_weight": 1.0, "pl_interval": 2, "ada_kimg": 0.1,
                                    "ada_interval": 1, "ada_p_init": 0.2})
    spec = GeneratorSpec(2, 1, (28, 28), 1)
    straight = family(spec, cfg, seed=3)
    straight.fit(breast_malignant, 6)
    first = family(spec, cfg, seed=3)
    first.fit(breast_malignant, 3, checkpoint_path=tmp_path / "ckpt.pt")
    resumed = Generator.load(tmp_path / "ckpt.pt")
    assert type(resumed) is family and resumed.step == 3
    resumed.fit(breast_malignant, 6)
    _assert_same_state(straight, resumed)
    assert float(straight.ada.p) != pytest.approx(0.2)  # p moved (and was carried over: state above)
    assert np.array_equal(straight.sample(4, 0, seed=9), resumed.sample(4, 0, seed=9))


def test_same_seed_is_bit_identical_and_another_seed_differs(breast_malignant):
    family = get_generator("stylegan2")
    spec = GeneratorSpec(2, 1, (28, 28), 1)
    a, b, c = (family(spec, family.Config(**TINY), seed=s) for s in (1, 1, 2))
    for m in (a, b, c):
        m.fit(breast_malignant, 2)
    assert np.array_equal(a.sample(6, 0, seed=4), b.sample(6, 0, seed=4))
    assert not np.array_equal(a.sample(6, 0, seed=4), a.sample(6, 0, seed=5))
    assert not np.array_equal(a.sample(6, 0, seed=4), c.sample(6, 0, seed=4))


def test_rgb_non_square_conditional_and_bad_specs():
    """RGB 40×48 trains on a 64 canvas with two classes; sample() returns the dataset's size."""
    family = get_generator("stylegan2")
    spec = GeneratorSpec(2, 3, (40, 48), 2)
    model = family(spec, family.Config(**TINY), seed=0)
    assert model.canvas.side == 64
    rng = np.random.default_rng(0)
    data = TrainingData(rng.random((8, 3, 40, 48), dtype=np.float32), np.array([0, 1] * 4))
    model.fit(data, 1)
    out0, out1 = model.sample(3, 0, seed=0), model.sample(3, 1, seed=0)
    assert out0.shape == (3, 3, 40, 48) and not np.array_equal(out0, out1)
    with pytest.raises(InvalidInputError, match="2D"):
        family(GeneratorSpec(3, 1, (16, 16, 16), 1), family.Config(**TINY))
    with pytest.raises(InvalidInputError, match="image_size"):
        family(GeneratorSpec(2, 1, (2048, 2048), 1), family.Config(**TINY))
