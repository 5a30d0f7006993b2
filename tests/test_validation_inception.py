"""Standard FID only from local Inception weights; never a download."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from synthcohort.core.settings import get_settings
from synthcohort.validation.inception import WEIGHTS_NAME, inception_features_available


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validation tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_missing_weights_are_reported_not_downloaded(monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SYNTHCOHORT_INCEPTION_WEIGHTS", str(tmp_path / "nowhere.pth"))
    get_settings.cache_clear()
    ext, why = inception_features_available(2)
    assert ext is None
    assert why.startswith("Inception weights not found at ") and str(tmp_path / "nowhere.pth") in why
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_NAME) in why and "standard FID not computed" in why
    assert not (tmp_path / "torch" / "hub").exists()
    assert inception_features_available(3)[0] is None


def test_local_weights_file_is_used_and_hashed(monkeypatch, tmp_path, no_network):
    """A weights file of the right architecture (random values: the real one is not shipped)."""
    from pytorch_fid import inception as pf

    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    path = tmp_path / "weights" / WEIGHTS_NAME
    path.parent.mkdir()
    torch.save(net.state_dict(), path)
    monkeypatch.setenv("SYNTHCOHORT_INCEPTION_WEIGHTS", str(path))
    get_settings.cache_clear()
    ext, why = inception_features_available(2)
    assert why is None and ext.dim == 2048 and len(ext.sha256) == 64
    feats = ext(np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32))
    assert feats.shape == (3, 2048) and np.isfinite(feats).all() and feats.std(0).max() > 0
    from synthcohort.validation.encoder import state_dict_sha256

    assert ext.sha256 == state_dict_sha256(net)  # the hash is of the weights that were loaded
