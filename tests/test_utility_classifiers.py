"""The utility protocol's classifier is MedMNIST v2's ResNet-18 for small inputs, with a budget
that gives small sets enough optimiser steps. Whether it reaches MedMNIST v2's published test
AUC is ``benchmarks/utility_calibration.py`` (not yet: benchmarks/RESULTS.md)."""

from __future__ import annotations

import numpy as np

from synthcohort.validation.classifiers import RECIPES, build_classifier


def test_resnet18_is_medmnists_small_input_network():
    """3 × 3 stride-1 stem and no max pool: a 28² image reaches the first residual stage whole;
    2D and 3D from one builder; about 11 M parameters like ResNet-18."""
    import torch

    net = build_classifier("resnet18", 2, 1, 2)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert net.no_max_pool  # MONAI keeps the module but skips it
    assert 10.5e6 < sum(p.numel() for p in net.parameters()) < 11.5e6
    stage1: dict = {}

    def keep_shape(module, inputs, output) -> None:  # a hook that returns None leaves the output alone
        stage1["shape"] = output.shape

    net.layer1.register_forward_hook(keep_shape)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 2) and stage1["shape"][-2:] == (28, 28)
    assert build_classifier("resnet18", 3, 1, 2)(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 2)


def test_recipe_budget_gives_small_sets_enough_steps():
    r = RECIPES["resnet18"]
    assert r.epochs_for(546) * np.ceil(546 / r.batch_size) >= 600  # BreastMNIST: 34 epochs of 18 steps
    assert r.epochs_for(4708) == r.min_epochs  # PneumoniaMNIST: 8 epochs are already 1,184 steps
    assert r.epochs_for(10) == r.max_epochs
