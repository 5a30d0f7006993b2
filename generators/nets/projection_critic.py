"""Class-conditional WGAN critic with a projection head, 2D or 3D.

Projection discriminator (Miyato & Koyama 2018, "cGANs with Projection Discriminator"):
``f(x, y) = ψ(φ(x)) + ⟨v_y, φ(x)⟩`` where ``φ`` is a conv feature extractor with global sum
pooling, ``ψ`` a linear head and ``v_y`` a learned class embedding. No batch norm: the
WGAN-GP penalty is per sample (Gulrajani et al. 2017, section 4), so the critic must not
mix samples of a batch. A mask, when conditioned, is an extra input channel.
"""

from __future__ import annotations

import torch
from torch import nn

from synthcohort.generators.nets.layers import conv, num_halvings


class ProjectionCritic(nn.Module):
    """f(x, y[, m]) → (B,) unbounded critic score.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        image_size: input size, (H, W) or (D, H, W); sets the number of stride-2 stages.
        num_classes: number of class labels (rows of ``v``).
        base_channels: width of the first stage; doubled per stage, capped at ``max_channels``.
        mask_channels: 0 or 1 (mask as an extra input channel).
        max_channels: cap on stage width.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_size: tuple[int, ...],
                 num_classes: int, base_channels: int = 32, mask_channels: int = 0,
                 max_channels: int = 256):
        super().__init__()
        Conv = conv(spatial_dims)
        k = num_halvings(tuple(image_size))
        widths = [min(max_channels, base_channels * 2**i) for i in range(k + 1)]
        layers: list[nn.Module] = [Conv(in_channels + mask_channels, widths[0], 3, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for i in range(k):
            layers += [Conv(widths[i], widths[i + 1], 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        self.phi = nn.Sequential(*layers)
        self.psi = nn.Linear(widths[-1], 1)
        self.v = nn.Embedding(num_classes, widths[-1])
        self.mask_channels = mask_channels

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.mask_channels:
            if mask is None:
                raise ValueError("this critic is mask-conditioned: pass a mask")
            x = torch.cat([x, mask.to(x.dtype) * 2.0 - 1.0], dim=1)
        h = self.phi(x).flatten(2).sum(dim=2)  # global sum pooling → (B, C)
        return self.psi(h).squeeze(1) + (self.v(y) * h).sum(dim=1)
