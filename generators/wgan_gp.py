"""Conditional WGAN-GP, 2D or 3D, optionally mask-conditioned.

Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1: the critic
``D`` minimises ``D(x̃) − D(x) + λ (‖∇_x̂ D(x̂)‖₂ − 1)²`` with ``x̂ = ε x + (1 − ε) x̃``,
``ε ~ U[0, 1]``, for ``n_critic`` steps per generator step; the generator minimises
``−D(G(z))``. Defaults are the paper's: λ = 10, n_critic = 5, Adam α = 1e-4, β = (0.5, 0.9).
Class conditioning: a projection critic (Miyato & Koyama 2018) and a class embedding in the
generator. Mask conditioning: the mask is an extra input channel of both networks, and the
critic judges (image, mask) pairs, so a generated image must fit its mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from synthcohort.generators.base import Batch, Generator
from synthcohort.generators.configs import WGANGPConfig
from synthcohort.generators.ema import EMA
from synthcohort.generators.nets.dcgan_generator import ConditionalDCGANGenerator
from synthcohort.generators.nets.projection_critic import ProjectionCritic
from synthcohort.generators.registry import register


@register("wgan-gp")
class WGANGP(Generator):
    """See the module docstring. ``G`` generator, ``D`` critic, ``G_ema`` the sampling copy."""

    Config = WGANGPConfig
    config: WGANGPConfig

    def build(self) -> None:
        s, c = self.spec, self.config
        mc = 1 if s.mask_conditioned else 0
        fmt = self.memory_format
        self.G = ConditionalDCGANGenerator(
            s.spatial_dims, s.in_channels, s.image_size, s.num_classes, z_dim=c.z_dim,
            base_channels=c.g_channels, embed_dim=c.embed_dim, mask_channels=mc,
            max_channels=c.max_channels,
        ).to(self.device, memory_format=fmt)
        self.D = ProjectionCritic(
            s.spatial_dims, s.in_channels, s.image_size, s.num_classes, base_channels=c.d_channels,
            mask_channels=mc, max_channels=c.max_channels,
        ).to(self.device, memory_format=fmt)
        self.G_ema = EMA(self.G, c.ema_decay)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=tuple(c.betas))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.lr, betas=tuple(c.betas))

    def state_modules(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema, "opt_g": self.opt_g, "opt_d": self.opt_d}

    def _z(self, n: int, rng: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, generator=rng, device=self.device)

    def gradient_penalty(self, x: torch.Tensor, x_tilde: torch.Tensor, y: torch.Tensor,
                         m: torch.Tensor | None) -> torch.Tensor:
        """(‖∇_x̂ D(x̂)‖₂ − 1)² averaged over the batch, x̂ on lines between real and fake."""
        eps = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), generator=self.rng, device=self.device)
        x_hat = (eps * x + (1.0 - eps) * x_tilde).requires_grad_(True)
        with self.autocast():
            d_hat = self.D(x_hat, y, m)
        (grad,) = torch.autograd.grad(d_hat.float().sum(), x_hat, create_graph=True)
        return ((grad.float().flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()

    def train_step(self, next_batch: Callable[[], Batch]) -> dict[str, torch.Tensor]:
        c = self.config
        self.D.requires_grad_(True)
        for _ in range(c.n_critic):
            b = next_batch()
            x, y, m = b.images, b.labels, b.masks
            with torch.no_grad(), self.autocast():
                x_tilde = self.G(self._z(x.shape[0], self.rng), y, m)
            x_tilde = x_tilde.float()
            with self.autocast():
                d_real = self.D(x, y, m).float()
                d_fake = self.D(x_tilde, y, m).float()
            gp = self.gradient_penalty(x, x_tilde, y, m)
            loss_d = d_fake.mean() - d_real.mean() + c.gp_lambda * gp
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()

        b = next_batch()
        self.D.requires_grad_(False)  # no critic gradients in the generator step
        with self.autocast():
            loss_g = -self.D(self.G(self._z(b.images.shape[0], self.rng), b.labels, b.masks),
                             b.labels, b.masks).float().mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.G_ema.update(self.G, self.step)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "gp": gp.detach(),
                "wasserstein": (d_real.mean() - d_fake.mean()).detach()}

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, masks: torch.Tensor | None,
                 rng: torch.Generator) -> torch.Tensor:
        with self.autocast():
            x = self.G_ema.shadow(self._z(labels.shape[0], rng), labels, masks)
        return x.float()
