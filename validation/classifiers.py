"""The classifiers of the utility protocol (``validation.utility``): what a user would train.

``resnet18`` (default): ResNet-18 (He et al. 2016, "Deep Residual Learning for Image Recognition",
CVPR) adapted to small inputs as MedMNIST v2 does for its 28-px benchmarks (Yang et al. 2023,
"MedMNIST v2", Scientific Data 10, 41): a 3 × 3 stride-1 first convolution and no max pool, so a
28² image keeps its resolution through the first stage. MONAI's ``ResNet`` builds it for 2D or 3D
from ``spatial_dims``. Its recipe is MedMNIST v2's (Adam at 1e-3, the learning rate × 0.1 at 50 % and
75 % of the epochs, no augmentation) with batches of 32 instead of 128 (see ``RECIPES``).

``small_cnn``: the domain encoder's architecture (``validation.encoder.DomainEncoder``) with a
linear head, the protocol before ResNet-18; AdamW at 2e-3, batches of 64, constant rate. About
8 × cheaper on a CPU, and weaker: on PneumoniaMNIST at 9:1 it left random oversampling at
minority recall .65 where a plain CNN users would train reaches .82.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from monai.networks.nets import ResNet
from torch import nn

from synthcohort.validation.config import ClassifierName
from synthcohort.validation.encoder import DomainEncoder

CLASSIFIERS: tuple[ClassifierName, ...] = ("resnet18", "small_cnn")


@dataclass(frozen=True)
class Recipe:
    """How a classifier is trained: optimiser, batch size, the fractions of the epochs at which the
    learning rate drops tenfold, and the default budget. A fixed epoch count would give a 546-image
    set 17 × fewer optimiser steps than a 9,000-image one, so the default is at least ``min_steps``
    steps and ``min_epochs`` passes, at most ``max_epochs`` (the best epoch by val balanced
    accuracy from the first drop on is kept: ``validation.utility.selection_start``)."""

    optimizer: Literal["adam", "adamw"]
    lr: float
    weight_decay: float
    batch_size: int
    milestones: tuple[float, ...]
    min_epochs: int
    min_steps: int = 0
    max_epochs: int | None = None

    def epochs_for(self, n_train: int, batch_size: int | None = None) -> int:
        """The default number of epochs for a training set of ``n_train`` images."""
        per_epoch = max(1, math.ceil(n_train / (batch_size or self.batch_size)))
        epochs = max(self.min_epochs, math.ceil(self.min_steps / per_epoch))
        return min(epochs, self.max_epochs) if self.max_epochs else epochs

    def drop_epochs(self, epochs: int) -> list[int]:
        """The epochs after which the learning rate drops tenfold, for a run of ``epochs``."""
        return sorted({max(1, round(m * epochs)) for m in self.milestones})


RECIPES: dict[str, Recipe] = {
    # MedMNIST v2's recipe, but batches of 32: on BreastMNIST, batches of 128 (5 steps an epoch)
    # reached test AUC .873 after 20 epochs, batches of 32 .905 after 8 (measured, one seed).
    "resnet18": Recipe("adam", 1e-3, 0.0, 32, (0.5, 0.75), min_epochs=8, min_steps=600, max_epochs=40),
    # Measured on BreastMNIST (546 train images, 2 seeds): 6 epochs (54 optimiser steps) left "no
    # augmentation" at minority recall .43 / AUROC .75; 30 epochs give .71 / .85, and 60 no more (.67 / .84).
    "small_cnn": Recipe("adamw", 2e-3, 1e-4, 64, (), min_epochs=30),
}


def build_classifier(name: str, spatial_dims: int, in_channels: int, num_classes: int) -> nn.Module:
    """A fresh, untrained classifier of ``name`` for (N, C, *spatial) inputs in [-1, 1]."""
    if name == "resnet18":
        return ResNet("basic", [2, 2, 2, 2], [64, 128, 256, 512], spatial_dims=spatial_dims,
                      n_input_channels=in_channels, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True,
                      num_classes=num_classes)
    if name == "small_cnn":
        return DomainEncoder(spatial_dims, in_channels, 32, num_classes)
    raise ValueError(f"unknown utility classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
