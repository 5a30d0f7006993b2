"""The KL-regularised autoencoder of latent diffusion, 2D or 3D: image ⇄ latent grid.

MONAI's ``AutoencoderKL`` (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models", CVPR; Pinaya et al. 2022, "Brain Imaging Generation with Latent Diffusion
Models", DGM4MICCAI) down-samples by ``f = 2**(len(channels) - 1)``. Here inputs whose sizes
are not multiples of ``f`` are padded (edge values) and decoded images cropped back, so any
image size works, and a mask is brought to the latent grid by area averaging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL
from torch import nn


class LatentAutoencoder(nn.Module):
    """E(x) → (μ, σ) of q(z|x) on the latent grid, D(z) → x̂ at the image size.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (also the decoder's output channels).
        image_size: (H, W) or (D, H, W).
        channels: width per level; one down-sampling between levels.
        latent_channels: channels of z.
        num_res_blocks: residual blocks per level.
        norm_num_groups: GroupNorm groups; must divide every width.
        attention: non-local self-attention at the bottleneck of encoder and decoder.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_size: tuple[int, ...],
                 channels: tuple[int, ...] = (16, 32, 32), latent_channels: int = 3, num_res_blocks: int = 1,
                 norm_num_groups: int = 8, attention: bool = False):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.image_size = tuple(int(s) for s in image_size)
        self.factor = 2 ** (len(channels) - 1)
        self.padded_size = tuple(-(-s // self.factor) * self.factor for s in self.image_size)
        self.latent_size = tuple(s // self.factor for s in self.padded_size)
        self.latent_channels = int(latent_channels)
        self.net = AutoencoderKL(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=in_channels,
            num_res_blocks=num_res_blocks, channels=tuple(channels),
            attention_levels=(False,) * len(channels), latent_channels=latent_channels,
            norm_num_groups=norm_num_groups, with_encoder_nonlocal_attn=attention,
            with_decoder_nonlocal_attn=attention, use_flash_attention=True,  # fused, as in DenoiserUNet
        )

    def _pad(self) -> list[int]:
        return [p for s, ps in zip(reversed(self.image_size), reversed(self.padded_size)) for p in (0, ps - s)]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) of the diagonal Gaussian q(z|x), each (B, latent_channels, *latent_size)."""
        pad = self._pad()
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        return self.net.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net.decode(z)
        return x[(slice(None), slice(None), *(slice(0, s) for s in self.image_size))]

    def to_latent_grid(self, m: torch.Tensor) -> torch.Tensor:
        """A {0, 1} mask (B, 1, *image_size) as the fraction of mask in each latent cell, in [0, 1]."""
        pad = self._pad()
        if any(pad):
            m = F.pad(m, pad)
        pool = F.avg_pool3d if m.dim() == 5 else F.avg_pool2d
        return pool(m, self.factor)
