"""DynGAN's probabilistic discriminator with a projection on the partition label.

Luo & Yang, "DynGAN: Solving Mode Collapse in GANs with Dynamic Clustering", IEEE TPAMI 2024:
D(x | y) = sigmoid(logit) estimates the probability that x is real; the logit on real images
is what collapse detection smooths, and the penultimate features phi(x) are the space in
which the real data are partitioned. Conditioning by projection (Miyato & Koyama 2018):
logit = psi(phi(x)) + <embed(y), phi(x)>.

Two block types (``residual``): strided 4×4 convolutions (DCGAN), or the residual down-blocks
of SNGAN (Miyato et al. 2018, appendix B.4): two 3×3 convolutions, 2×2 average pooling and a
1×1 skip, summed with a 1/√2 gain (as StyleGAN2's residual discriminator).

No minibatch-stddev or batch normalisation: the logit and features of one image must not
depend on which other images share its batch, since they are monitored per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthcohort.generators.nets.dyngan_generator import init_leaky


class ResidualDownBlock(nn.Module):
    """x → avgpool((conv3 ∘ act ∘ conv3 ∘ act)(x)) + avgpool(conv1(x)), times 1/√2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        return (F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)) * (1 / math.sqrt(2))


class DynGANDiscriminator(nn.Module):
    """D(x | y) and its features phi(x).

    Args:
        num_labels: number of global partition labels.
        resolution: input side, a power of two ≥ 8 (down to 4×4, one halving per block).
        img_channels: input channels.
        width: channels of the last block; each earlier block halves it (at least 8).
        feature_dim: size of phi(x).
        residual: residual down-blocks (two convolutions each) instead of strided convolutions.
    """

    def __init__(self, *, num_labels: int, resolution: int, img_channels: int, width: int = 64,
                 feature_dim: int = 128, residual: bool = False):
        super().__init__()
        n_down = int(math.log2(resolution)) - 2
        if 2 ** (n_down + 2) != resolution or n_down < 1:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        ch = [max(8, width // 2 ** max(0, n_down - 1 - i)) for i in range(n_down)]  # narrowest first
        layers: list[nn.Module] = [nn.Conv2d(img_channels, ch[0], 3, padding=1)]
        if not residual:  # a residual block activates its input itself
            layers.append(nn.LeakyReLU(0.2))
        prev = ch[0]
        for c in ch:
            layers += ([ResidualDownBlock(prev, c)] if residual
                       else [nn.Conv2d(prev, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)])
            prev = c
        if residual:
            layers.append(nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(prev * 16, feature_dim)
        self.psi = nn.Linear(feature_dim, 1)
        self.embed = nn.Embedding(num_labels, feature_dim)
        init_leaky(self)
        nn.init.zeros_(self.embed.weight)  # a new partition starts as the unconditional D
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): the penultimate features, independent of the label."""
        return nn.functional.leaky_relu(self.fc(self.body(x).flatten(1)), 0.2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        phi = self.features(x)
        return self.psi(phi).squeeze(1) + (self.embed(y) * phi).sum(dim=1)
