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

``monai_classifier``: MONAI's ``Classifier`` (``monai.networks.nets.Classifier``: residual units of
two 3 × 3 convolutions with batch norm and PReLU, each stage halving the grid, then a linear layer),
widths 16–32–64–128, trained by the small CNN's recipe. It is the 3D classifier for a CPU: at 28³ the
small-input ResNet-18 costs about 37 GFLOP a forward pass (its first stage runs at 28³ × 64
channels), 46 CPU s per batch of 32 on one core here, so hours per classifier; this network takes
0.2 s. On AdrenalMNIST3D with hyperplasia cut to 1:10 (one classifier seed each, 2026-12-07) it gave
the no-augmentation arm minority recall .58, balanced accuracy .72, AUROC .79, against .32 / .62 / .78
for the small CNN; with MedMNIST v2's recipe instead, it and a quarter-width MONAI ResNet-18 stayed
at recall .13–.19 (AUROC .75–.77): for these networks the recipe made the difference
(``benchmarks/RESULTS.md``). Its last layer is sized for the input grid, so it is built per input shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from monai.networks.nets import Classifier, ResNet
from torch import nn

from synthcohort.validation.config import ClassifierName
from synthcohort.validation.encoder import DomainEncoder

CLASSIFIERS: tuple[ClassifierName, ...] = ("resnet18", "small_cnn", "monai_classifier")


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
RECIPES["monai_classifier"] = RECIPES["small_cnn"]  # its best recipe on AdrenalMNIST3D (module docstring)
MONAI_CLASSIFIER_CHANNELS = (16, 32, 64, 128)


def build_classifier(name: str, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A fresh, untrained classifier of ``name`` for (N, *in_shape) inputs in [-1, 1]; ``in_shape``
    is (C, *spatial), 2D or 3D."""
    in_channels, spatial_dims = in_shape[0], len(in_shape) - 1
    if name == "resnet18":
        return ResNet("basic", [2, 2, 2, 2], [64, 128, 256, 512], spatial_dims=spatial_dims,
                      n_input_channels=in_channels, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True,
                      num_classes=num_classes)
    if name == "small_cnn":
        return DomainEncoder(spatial_dims, in_channels, 32, num_classes)
    if name == "monai_classifier":
        return Classifier(tuple(in_shape), num_classes, MONAI_CLASSIFIER_CHANNELS,
                          (2,) * len(MONAI_CLASSIFIER_CHANNELS), norm="batch")
    raise ValueError(f"unknown utility classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
