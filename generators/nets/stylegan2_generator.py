"""StyleGAN2 generator: mapping network, modulated convolutions, noise, skip architecture.

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2),
Fig. 2 and Fig. 7; class conditioning as in StyleGAN2-ADA (Karras et al. 2020, "Training
Generative Adversarial Networks with Limited Data"): an embedding of the one-hot class c,
normalised and concatenated to the normalised z at the mapping network's input.

Notation: z latent, w intermediate latent, s style (affine of w), w' the conv weight after
modulation and demodulation (Eq. 1–3). Equalised learning rate (Karras et al. 2018): weights
are stored N(0, 1) / lr_mul and scaled at run time by lr_mul / sqrt(fan_in).

Up-sampling is bilinear interpolation before the 3×3 modulated convolution, in place of the
paper's transposed convolution with a [1, 3, 3, 1] FIR filter (same receptive field, simpler;
aliasing is negligible at the 32–256 pixel sizes this project trains).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with StyleGAN's gain sqrt(2), which keeps activations at unit variance."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate."""

    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(x) if self.activate else x


class MappingNetwork(nn.Module):
    """z (and class c) → w through ``num_layers`` fully connected layers (lr_mul 0.01)."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, num_layers: int = 8,
                 lr_mul: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.embed = EqualLinear(num_classes, w_dim) if num_classes > 1 else None
        in_dim = z_dim + (w_dim if self.embed is not None else 0)
        layers = []
        for i in range(num_layers):
            layers.append(EqualLinear(in_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, activate=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            y = normalize_2nd_moment(self.embed(F.one_hot(c, self.num_classes).to(z.dtype)))
            x = torch.cat([x, y], dim=1)
        return self.layers(x)


class ModulatedConv2d(nn.Module):
    """Modulated convolution (StyleGAN2 Eq. 1–3), run as one grouped convolution per batch."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 *, demodulate: bool = True, up: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)  # s = A(w)
        self.demodulate, self.up, self.padding = demodulate, up, kernel_size // 2
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        s = self.affine(w)  # (B, in)
        wp = self.weight[None] * self.weight_gain * s[:, None, :, None, None]  # Eq. 1: w'_ijk = s_i w_ijk
        if self.demodulate:  # Eq. 3: w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)
            wp = wp * (wp.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            H, W = H * 2, W * 2
        x = x.reshape(1, B * self.in_channels, H, W)
        wp = wp.reshape(B * self.out_channels, self.in_channels, *wp.shape[3:])
        x = F.conv2d(x, wp, padding=self.padding, groups=B)
        return x.reshape(B, self.out_channels, H, W)


class StyledLayer(nn.Module):
    """Modulated 3×3 conv, per-pixel noise B (scaled per layer), bias, activation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution = resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        x = self.conv(x, w)
        B, _, H, W = x.shape
        noise = torch.randn(B, 1, H, W, generator=rng, device=x.device, dtype=x.dtype)
        x = x + noise * self.noise_strength
        return lrelu(x + self.bias.view(1, -1, 1, 1))


class ToRGB(nn.Module):
    """1×1 modulated conv without demodulation: the skip generator's per-resolution output."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return max(1, min(channel_max, channel_base // resolution))


class SynthesisNetwork(nn.Module):
    """Constant 4×4 input, two styled layers per resolution, skip connections to the image."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int,
                 channel_max: int):
        super().__init__()
        log2 = int(math.log2(resolution))
        if 2 ** log2 != resolution or resolution < 8:
            raise ValueError(f"synthesis resolution must be a power of two >= 8, got {resolution}")
        ch = {2 ** i: channels_at(2 ** i, channel_base, channel_max) for i in range(2, log2 + 1)}
        self.const = nn.Parameter(torch.randn(ch[4], 4, 4))
        self.layers = nn.ModuleList([StyledLayer(ch[4], ch[4], w_dim, 4)])
        self.torgbs = nn.ModuleList([ToRGB(ch[4], img_channels, w_dim)])
        for i in range(3, log2 + 1):
            r = 2 ** i
            self.layers.append(StyledLayer(ch[r // 2], ch[r], w_dim, r, up=True))
            self.layers.append(StyledLayer(ch[r], ch[r], w_dim, r))
            self.torgbs.append(ToRGB(ch[r], img_channels, w_dim))
        # w index per layer: conv layers take one each; a ToRGB shares the next conv's w (as in the paper)
        self.num_ws = len(self.layers) + 1

    def forward(self, ws: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        """ws: (B, num_ws, w_dim). Returns the image at full resolution (no output activation)."""
        B = ws.shape[0]
        x = self.const[None].expand(B, -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], rng)
        img = self.torgbs[0](x, ws[:, 1])
        k = 1
        for t in range(1, len(self.torgbs)):
            x = self.layers[k](x, ws[:, k], rng)
            x = self.layers[k + 1](x, ws[:, k + 1], rng)
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + self.torgbs[t](x, ws[:, k + 2])
            k += 2
        return img


class StyleGAN2Generator(nn.Module):
    """Mapping + synthesis; style mixing is decided by the caller's ``mixing_prob``."""

    def __init__(self, *, z_dim: int, w_dim: int, num_classes: int, resolution: int, img_channels: int,
                 mapping_layers: int = 8, channel_base: int = 16384, channel_max: int = 512):
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        self.mapping = MappingNetwork(z_dim, w_dim, num_classes, mapping_layers)
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, channel_base, channel_max)
        self.num_ws = self.synthesis.num_ws

    def ws(self, c: torch.Tensor, rng: torch.Generator | None, mixing_prob: float = 0.0) -> torch.Tensor:
        """Per-layer w (B, num_ws, w_dim); with style mixing, w2 takes over from a random layer."""
        B = c.shape[0]
        z = torch.randn(B, self.z_dim, generator=rng, device=c.device)
        w = self.mapping(z, c)
        ws = w[:, None, :].expand(B, self.num_ws, self.w_dim)
        if mixing_prob > 0:
            z2 = torch.randn(B, self.z_dim, generator=rng, device=c.device)
            w2 = self.mapping(z2, c)
            cutoff = torch.randint(1, self.num_ws, (B,), generator=rng, device=c.device)
            use = torch.rand(B, generator=rng, device=c.device) < mixing_prob
            cutoff = torch.where(use, cutoff, torch.full_like(cutoff, self.num_ws))
            later = torch.arange(self.num_ws, device=c.device)[None, :] >= cutoff[:, None]
            ws = torch.where(later[:, :, None], w2[:, None, :], ws)
        return ws

    def forward(self, c: torch.Tensor, rng: torch.Generator | None, mixing_prob: float = 0.0) -> torch.Tensor:
        return self.synthesis(self.ws(c, rng, mixing_prob), rng)
