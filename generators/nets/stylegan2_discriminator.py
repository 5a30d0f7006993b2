"""StyleGAN2 residual discriminator with a minibatch-stddev layer and a class projection.

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", Fig. 7c
(residual D; skip and main paths summed and scaled by 1/sqrt(2)); minibatch standard
deviation from Karras et al. 2018 (ProGAN, Sec. 3). Class conditioning by projection
(Miyato & Koyama 2018, "cGANs with Projection Discriminator"), the form StyleGAN2-ADA uses
(its "cmap"): logit = psi(phi(x)) + <embed(c), phi(x)> / sqrt(dim).

Down-sampling is 2×2 average pooling after the second 3×3 conv (the paper blurs with a
[1, 3, 3, 1] filter then strides; equivalent in intent at these sizes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthcohort.generators.nets.stylegan2_generator import (
    EqualLinear,
    channels_at,
    lrelu,
)


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(self.skip(x), 2)
        x = lrelu(self.conv0(x))
        x = F.avg_pool2d(lrelu(self.conv1(x)), 2)
        return (x + y) / math.sqrt(2.0)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1) -> torch.Tensor:
    """Append the std over groups of samples as extra feature maps (ProGAN Sec. 3)."""
    B, C, H, W = x.shape
    G = min(group_size, B)
    while B % G:
        G -= 1
    F_ = num_features
    y = x.reshape(G, -1, F_, C // F_, H, W)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()
    y = y.mean(dim=(2, 3, 4))  # (B/G, F)
    y = y.reshape(-1, F_, 1, 1).repeat(G, 1, H, W)
    return torch.cat([x, y], dim=1)


class StyleGAN2Discriminator(nn.Module):
    """Returns the logit; ``features`` gives the penultimate (class-independent) features phi(x)."""

    def __init__(self, *, num_classes: int, resolution: int, img_channels: int,
                 channel_base: int = 16384, channel_max: int = 512, mbstd_group: int = 4):
        super().__init__()
        log2 = int(math.log2(resolution))
        ch = {2 ** i: channels_at(2 ** i, channel_base, channel_max) for i in range(2, log2 + 1)}
        self.from_rgb = EqualConv2d(img_channels, ch[resolution], 1)
        self.blocks = nn.Sequential(*[ResidualBlock(ch[2 ** i], ch[2 ** (i - 1)]) for i in range(log2, 2, -1)])
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(ch[4] + 1, ch[4], 3)
        self.fc = EqualLinear(ch[4] * 16, ch[4], activate=True)
        self.out = EqualLinear(ch[4], 1)
        self.embed = EqualLinear(num_classes, ch[4]) if num_classes > 1 else None
        self.num_classes = num_classes
        self.feature_dim = ch[4]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = lrelu(self.from_rgb(x))
        x = self.blocks(x)
        x = minibatch_stddev(x, self.mbstd_group)
        x = lrelu(self.conv(x))
        return self.fc(x.flatten(1))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        phi = self.features(x)
        logit = self.out(phi).squeeze(1)
        if self.embed is not None:
            e = self.embed(F.one_hot(c, self.num_classes).to(phi.dtype))
            logit = logit + (e * phi).sum(dim=1) / math.sqrt(phi.shape[1])
        return logit
