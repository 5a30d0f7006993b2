"""Differentiable augmentation for GANs on small data, with ADA's adaptive probability.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (ADA).
Everything the discriminator sees (reals and fakes, in the D and the G passes) goes through
the same stochastic pipeline; each transform is applied to each image independently with
probability ``p``. Because the pipeline is differentiable and applied to reals as well,
the generator is not pushed to reproduce the augmentations ("leaking") as long as ``p``
stays below about 0.8 (paper, Sec. 2.3).

Geometric transforms (x-flip, 90° rotations, integer translation, isotropic scaling,
arbitrary rotation) are composed into one affine matrix per image and applied as one bilinear warp with reflection
padding (:func:`bilinear_reflect`, a twice-differentiable ``grid_sample``); the paper uses an upsampled, wavelet-filtered
warp, which matters for aliasing at high resolutions but not for medical images of
32–256 pixels. Colour transforms are brightness and contrast (grey and RGB alike; the
paper's luma flip, hue and saturation only apply to RGB and are left out), then cutout
(DeVries & Taylor 2017), which ADA evaluates among its "extra" transforms.

:class:`AdaptiveP` implements the overfitting heuristic r_t = E[sign(D_train)] and moves
``p`` toward the target r_t = 0.6 by ``batch * interval / (ada_kimg * 1000)`` each
adjustment, so that p can go from 0 to 1 in ``ada_kimg`` thousand images (paper: 500).
All state is tensors on the device: no host-device synchronisation in the training loop.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


class AugmentPipe(torch.nn.Module):
    """ADA's "bgc" pipeline (blit, geometric, colour) plus cutout; p is passed per call."""

    def __init__(self, *, xflip: bool = True, rotate90: bool = True, xint: bool = True,
                 scale: bool = True, rotate: bool = True, brightness: bool = True,
                 contrast: bool = True, cutout: bool = True,
                 xint_max: float = 0.125, scale_std: float = 0.2, rotate_max: float = 1.0,
                 brightness_std: float = 0.2, contrast_std: float = 0.5, cutout_size: float = 0.5):
        super().__init__()
        self.xflip, self.rotate90, self.xint = xflip, rotate90, xint
        self.scale, self.rotate = scale, rotate
        self.brightness, self.contrast, self.cutout = brightness, contrast, cutout
        self.xint_max, self.scale_std, self.rotate_max = xint_max, scale_std, rotate_max
        self.brightness_std, self.contrast_std, self.cutout_size = brightness_std, contrast_std, cutout_size

    def forward(self, x: torch.Tensor, p: torch.Tensor | float, rng: torch.Generator) -> torch.Tensor:
        """Augment ``x`` (B, C, H, W) in [-1, 1]; every draw comes from ``rng``."""
        if x.ndim != 4:
            raise ValueError("AugmentPipe handles 2D images (B, C, H, W)")
        B, C, H, W = x.shape
        dev = x.device
        p = torch.as_tensor(p, dtype=torch.float32, device=dev)

        def u(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=rng, device=dev)

        def n(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=rng, device=dev)

        def gate(v: torch.Tensor, neutral: float) -> torch.Tensor:
            """Keep v for images drawn with probability p, else the neutral value."""
            return torch.where(u(B) < p, v, torch.full_like(v, neutral))

        # Geometric part: build G (B, 3, 3) mapping output pixel coords to input coords.
        G = torch.eye(3, device=dev).repeat(B, 1, 1)
        if self.xflip:
            i = gate(torch.floor(u(B) * 2), 0.0)
            G = G @ _scale2d(1 - 2 * i, torch.ones_like(i))
        if self.rotate90:
            i = gate(torch.floor(u(B) * 4), 0.0)
            G = G @ _rotate2d(-math.pi / 2 * i)
        if self.xint:
            t = (u(B, 2) * 2 - 1) * self.xint_max
            keep = (u(B) < p).float()[:, None]
            t = t * keep
            # integer pixel shifts, in normalised coordinates (2 / size per pixel)
            tx = torch.round(t[:, 0] * W) * 2 / W
            ty = torch.round(t[:, 1] * H) * 2 / H
            G = G @ _translate2d(tx, ty)
        if self.scale:
            s = gate(torch.exp2(n(B) * self.scale_std), 1.0)
            G = G @ _scale2d(s, s)
        if self.rotate:
            # ADA applies the rotation with p_rot = 1 - sqrt(1 - p) before and after scaling
            p_rot = 1 - torch.sqrt((1 - p).clamp(min=0))
            theta = (u(B) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(u(B) < p_rot, theta, torch.zeros_like(theta))
            G = G @ _rotate2d(-theta)
        if any((self.xflip, self.rotate90, self.xint, self.scale, self.rotate)):
            grid = F.affine_grid(G[:, :2, :], list(x.shape), align_corners=False)
            x = bilinear_reflect(x, grid)

        # Colour part.
        if self.brightness:
            b = gate(n(B) * self.brightness_std, 0.0)
            x = x + b.view(B, 1, 1, 1) * 2  # the paper's std is for [0, 1]-scaled images
        if self.contrast:
            c = gate(torch.exp2(n(B) * self.contrast_std), 1.0)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * c.view(B, 1, 1, 1) + mean
        if self.cutout:
            keep = (u(B) < p).float().view(B, 1, 1, 1)
            centre = u(B, 2)
            ys = (torch.arange(H, device=dev, dtype=torch.float32) + 0.5) / H
            xs = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5) / W
            inside_y = (ys.view(1, H) - centre[:, 1:2]).abs() < self.cutout_size / 2
            inside_x = (xs.view(1, W) - centre[:, 0:1]).abs() < self.cutout_size / 2
            hole = (inside_y[:, :, None] & inside_x[:, None, :]).float().view(B, 1, H, W)
            x = x * (1 - hole * keep)
        return x


def _reflect(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect pixel coordinates into [-0.5, size - 0.5] (grid_sample's reflection padding)."""
    c = (coord + 0.5).abs()
    flips = torch.floor(c / size)
    extra = c - flips * size
    c = torch.where(flips.remainder(2) == 0, extra, size - extra) - 0.5
    return c.clamp(0, size - 1)


def bilinear_reflect(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``grid_sample(x, grid, bilinear, reflection, align_corners=False)`` built from gathers.

    The lazy R1 penalty differentiates D(augment(x)) twice with respect to x; PyTorch's
    grid_sample has no double backward on CUDA (ADA ships a custom op for the same reason).
    Gathers are linear in x, so their gradients are differentiable again.
    """
    B, C, H, W = x.shape
    Ho, Wo = grid.shape[1:3]
    ix = _reflect(((grid[..., 0] + 1) * W - 1) / 2, W)
    iy = _reflect(((grid[..., 1] + 1) * H - 1) / 2, H)
    x0, y0 = torch.floor(ix), torch.floor(iy)
    wx, wy = (ix - x0)[:, None], (iy - y0)[:, None]
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=W - 1), (y0 + 1).clamp(max=H - 1)
    flat = x.reshape(B, C, H * W)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        idx = (yy * W + xx).reshape(B, 1, Ho * Wo).expand(B, C, Ho * Wo)
        return flat.gather(2, idx).reshape(B, C, Ho, Wo)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(sx.shape[0], 3, 3, device=sx.device)
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = sx, sy, 1.0
    return m


def _rotate2d(theta: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(theta.shape[0], 3, 3, device=theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    # round so that 90° rotations are exact pixel permutations
    c = torch.where(c.abs() < 1e-6, torch.zeros_like(c), c)
    s = torch.where(s.abs() < 1e-6, torch.zeros_like(s), s)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1.0
    return m


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=tx.device).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


class AdaptiveP:
    """ADA's controller of the augmentation probability p (paper, Sec. 3).

    ``observe(D_real)`` accumulates sign(D_real) of the reals in the discriminator pass;
    every ``interval`` calls of ``update`` the estimate r_t = E[sign(D_real)] moves p by
    ``sign(r_t - target) * batch * interval / (kimg * 1000)``, clamped to [0, 1].
    """

    def __init__(self, *, target: float = 0.6, interval: int = 4, kimg: float = 500.0,
                 batch_size: int = 32, p_init: float = 0.0, device: torch.device | str = "cpu"):
        self.target, self.interval, self.kimg, self.batch_size = target, interval, kimg, batch_size
        self.device = torch.device(device)
        self.p = torch.tensor(float(p_init), device=self.device)
        self.r_t = torch.tensor(0.0, device=self.device)  # last estimate, for the log
        self._sign_sum = torch.zeros((), device=self.device)
        self._count = torch.zeros((), device=self.device)
        self._calls = 0

    def observe(self, d_real: torch.Tensor) -> None:
        self._sign_sum = self._sign_sum + torch.sign(d_real.detach().float()).sum()
        self._count = self._count + d_real.numel()

    def update(self) -> None:
        """Call once per training step; adjusts p every ``interval`` steps."""
        self._calls += 1
        if self._calls % self.interval:
            return
        self.r_t = self._sign_sum / self._count.clamp(min=1)
        adjust = torch.sign(self.r_t - self.target) * (self.batch_size * self.interval) / (self.kimg * 1000)
        self.p = (self.p + adjust).clamp(0.0, 1.0)
        self._sign_sum = torch.zeros_like(self._sign_sum)
        self._count = torch.zeros_like(self._count)

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p.cpu(), "r_t": self.r_t.cpu(), "sign_sum": self._sign_sum.cpu(),
                "count": self._count.cpu(), "calls": self._calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = state["p"].to(self.device)
        self.r_t = state["r_t"].to(self.device)
        self._sign_sum = state["sign_sum"].to(self.device)
        self._count = state["count"].to(self.device)
        self._calls = int(state["calls"])
