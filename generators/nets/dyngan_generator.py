"""DynGAN's conditional generator: a DCGAN-style up-sampling stack conditioned on a partition.

Luo & Yang, "DynGAN: Solving Mode Collapse in GANs with Dynamic Clustering", IEEE TPAMI 2024:
the generator is conditioned on the index of a partition of the real data, so that each
partition (a sub-type of the minority class) gets its own conditional distribution
G(z, y). The label y is a global partition index; :mod:`generators.dyngan` maps a class
and its partitions to it.

GroupNorm instead of BatchNorm: the output for one z does not depend on the rest of the
batch, so a seed gives the same image whatever the sampling batch size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def init_leaky(module: nn.Module) -> None:
    """He initialisation for leaky-ReLU(0.2) stacks: PyTorch's default init shrinks the
    activations layer by layer, which stalls short trainings of small nets."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0.2)
            nn.init.zeros_(m.bias)


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class DynGANGenerator(nn.Module):
    """G(z, y): z ~ N(0, I) and an embedding of the partition y → image in [-1, 1]."""

    def __init__(self, *, z_dim: int, num_labels: int, resolution: int, img_channels: int,
                 width: int = 64, embed_dim: int = 32):
        super().__init__()
        n_up = int(math.log2(resolution)) - 2
        if 2 ** (n_up + 2) != resolution or n_up < 1:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self.z_dim = z_dim
        self.embed = nn.Embedding(num_labels, embed_dim)
        ch = [max(8, width * 2 ** max(0, n_up - 1 - i)) for i in range(n_up + 1)]  # widest first
        self.fc = nn.Linear(z_dim + embed_dim, ch[0] * 16)
        self.ch0 = ch[0]
        blocks = []
        for i in range(n_up):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(ch[i], ch[i + 1], 3, padding=1),
                       nn.GroupNorm(_groups(ch[i + 1]), ch[i + 1]),
                       nn.LeakyReLU(0.2)]
        self.blocks = nn.Sequential(*blocks)
        self.to_img = nn.Conv2d(ch[-1], img_channels, 3, padding=1)
        init_leaky(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1))
        h = F.leaky_relu(h.view(-1, self.ch0, 4, 4), 0.2)
        return torch.tanh(self.to_img(self.blocks(h)))
