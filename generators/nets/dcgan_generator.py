"""Class- and (optionally) mask-conditional DCGAN-style generator, 2D or 3D.

Radford et al. 2016 ("Unsupervised Representation Learning with Deep Convolutional GANs")
layout: a linear map of the latent to a small feature map, then ``k`` upsampling stages
(nearest resize ×2 + 3-conv, as Odena et al. 2016 recommend against checkerboard
artefacts; stage sizes are ceil(size / 2**(k - i)) so odd sizes such as 35 come out exact) that
halve the width each time. Class conditioning: a learned class embedding concatenated to
``z``. Mask conditioning: the mask, resized to each stage, is an extra input channel of
every stage, so the generated anatomy follows the given mask at all scales.
GroupNorm instead of BatchNorm keeps a sample independent of the other samples in its batch
(sampling in batches of any size gives the same bits).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthcohort.generators.nets.layers import conv, num_halvings


class ConditionalDCGANGenerator(nn.Module):
    """G(z, y[, m]) → image in [-1, 1].

    Args:
        spatial_dims: 2 or 3.
        out_channels: image channels (1 grey, 3 RGB).
        image_size: output size, (H, W) or (D, H, W); any size.
        num_classes: number of class labels ``y`` (embedding rows).
        z_dim: latent size.
        base_channels: width of the last (full-resolution) stage; stage i has
            ``base_channels * 2**(k-i)`` channels, capped at ``max_channels``.
        embed_dim: class embedding size.
        mask_channels: 0 (unconditioned) or 1 (a binary mask is an input).
        max_channels: cap on stage width.
    """

    def __init__(self, spatial_dims: int, out_channels: int, image_size: tuple[int, ...],
                 num_classes: int, z_dim: int = 64, base_channels: int = 32, embed_dim: int = 32,
                 mask_channels: int = 0, max_channels: int = 256):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.image_size = tuple(int(s) for s in image_size)
        self.z_dim = z_dim
        self.mask_channels = mask_channels
        k = num_halvings(self.image_size)
        # sizes per stage, coarse to fine: ceil(size / 2**(k - i)), so any size is reached exactly
        self.stage_sizes = [tuple(math.ceil(s / 2 ** (k - i)) for s in self.image_size) for i in range(k + 1)]
        widths = [min(max_channels, base_channels * 2 ** (k - i)) for i in range(k + 1)]
        Conv = conv(spatial_dims)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.fc = nn.Linear(z_dim + embed_dim, widths[0] * math.prod(self.stage_sizes[0]))
        self.fc_norm = nn.GroupNorm(_groups(widths[0]), widths[0])
        self.stages = nn.ModuleList()
        for i in range(k):
            self.stages.append(nn.Sequential(
                Conv(widths[i] + mask_channels, widths[i + 1], 3, padding=1),
                nn.GroupNorm(_groups(widths[i + 1]), widths[i + 1]),
                nn.ReLU(inplace=True),
            ))
        self.to_image = Conv(widths[-1] + mask_channels, out_channels, 3, padding=1)
        self.widths = widths

    def forward(self, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, z_dim); y: (B,) long; mask: (B, 1, *image_size) in {0, 1} when conditioned."""
        h = self.fc(torch.cat([z, self.embed(y)], dim=1))
        h = F.relu(self.fc_norm(h.view(z.shape[0], self.widths[0], *self.stage_sizes[0])))
        for size, stage in zip(self.stage_sizes[1:], self.stages, strict=True):
            h = stage(self._with_mask(F.interpolate(h, size=size, mode="nearest"), mask))
        return torch.tanh(self.to_image(self._with_mask(h, mask)))

    def _with_mask(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if not self.mask_channels:
            return h
        if mask is None:
            raise ValueError("this generator is mask-conditioned: pass a mask")
        m = F.interpolate(mask.to(h.dtype), size=h.shape[2:], mode="nearest") * 2.0 - 1.0
        return torch.cat([h, m], dim=1)


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 where the width allows (Wu & He 2018 use 32; our nets are narrow)."""
    for g in (8, 4, 2):
        if channels % g == 0:
            return g
    return 1
