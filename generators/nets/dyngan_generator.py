"""DynGAN's conditional generator: an up-sampling stack conditioned on a partition.

Luo & Yang, "DynGAN: Solving Mode Collapse in GANs with Dynamic Clustering", IEEE TPAMI 2024:
the generator is conditioned on the index of a partition of the real data, so that each
partition (a sub-type of the minority class) gets its own conditional distribution
G(z, y). The label y is a global partition index; :mod:`generators.dyngan` maps a class
and its partitions to it.

Two block types (``residual``): DCGAN-style blocks (upsample, one 3×3 convolution) and the
pre-activation residual up-blocks of SNGAN/BigGAN (Miyato et al. 2018, "Spectral Normalization
for Generative Adversarial Networks", ICLR, appendix B.4; Brock et al. 2019, ICLR): two 3×3
convolutions plus a 1×1 skip, summed with a 1/√2 gain so the activations keep their scale.

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


class ResidualUpBlock(nn.Module):
    """x → (conv3 ∘ act ∘ norm ∘ conv3 ∘ up ∘ act ∘ norm)(x) + conv1(up(x)), times 1/√2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.leaky_relu(self.norm1(x), 0.2), scale_factor=2, mode="nearest")
        h = self.conv2(F.leaky_relu(self.norm2(self.conv1(h)), 0.2))
        return (h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))) * (1 / math.sqrt(2))


class DynGANGenerator(nn.Module):
    """G(z, y): z ~ N(0, I) and an embedding of the partition y → image in [-1, 1].

    Args:
        z_dim: latent size.
        num_labels: number of global partition labels.
        resolution: output side, a power of two ≥ 8 (4×4 base, one doubling per block).
        img_channels: output channels.
        width: channels of the last block; each earlier block doubles it.
        embed_dim: size of the partition embedding concatenated to z.
        residual: residual up-blocks (two convolutions each) instead of DCGAN blocks (one).
    """

    def __init__(self, *, z_dim: int, num_labels: int, resolution: int, img_channels: int,
                 width: int = 64, embed_dim: int = 32, residual: bool = False):
        super().__init__()
        n_up = int(math.log2(resolution)) - 2
        if 2 ** (n_up + 2) != resolution or n_up < 1:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self.z_dim = z_dim
        self.residual = residual
        self.embed = nn.Embedding(num_labels, embed_dim)
        ch = [max(8, width * 2 ** max(0, n_up - 1 - i)) for i in range(n_up + 1)]  # widest first
        self.fc = nn.Linear(z_dim + embed_dim, ch[0] * 16)
        self.ch0 = ch[0]
        blocks: list[nn.Module] = []
        for i in range(n_up):
            if residual:
                blocks.append(ResidualUpBlock(ch[i], ch[i + 1]))
            else:
                blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv2d(ch[i], ch[i + 1], 3, padding=1),
                           nn.GroupNorm(_groups(ch[i + 1]), ch[i + 1]),
                           nn.LeakyReLU(0.2)]
        if residual:  # pre-activation blocks end un-normalised
            blocks += [nn.GroupNorm(_groups(ch[-1]), ch[-1]), nn.LeakyReLU(0.2)]
        self.blocks = nn.Sequential(*blocks)
        self.to_img = nn.Conv2d(ch[-1], img_channels, 3, padding=1)
        init_leaky(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(-1, self.ch0, 4, 4)
        if not self.residual:  # a residual stack normalises and activates inside its first block
            h = F.leaky_relu(h, 0.2)
        return torch.tanh(self.to_img(self.blocks(h)))
