"""Latent diffusion, 2D or 3D, optionally mask-conditioned: the recipe of Rombach et al. 2022
("High-Resolution Image Synthesis with Latent Diffusion Models", CVPR) as applied to brain MRI by
Pinaya et al. 2022 ("Brain Imaging Generation with Latent Diffusion Models", DGM4MICCAI) and MAISI.

Why: pixel-space 3D diffusion costs seconds per step on CPU at 32³; a 4× down-sampling
autoencoder leaves the denoiser 64× fewer voxels. Two phases in the one ``fit`` loop (so
checkpoints and resume stay exact across the switch):

1. steps ``0 … ae_steps − 1`` train the KL autoencoder (:class:`generators.nets.autoencoder_kl.
   LatentAutoencoder`): ``z = μ + σ ⊙ ε`` from E(x), loss ``−log p(x | D(z)) + λ_KL · KL(q(z|x) ‖ N(0, I))``
   with a Laplace p (``‖D(z) − x‖₁``, the papers' choice for intensity images) or, for binary volumes
   (``ae_likelihood="bernoulli"``), a Bernoulli p whose logits D(z) gives (binary cross-entropy; the
   image is then ``2σ(D(z)) − 1``); perceptual and adversarial terms of the papers left out;
2. the remaining steps train ε_θ (:class:`generators.nets.denoiser_unet.DenoiserUNet`) by DDPM on
   ``z_0 = s · z`` with the autoencoder frozen; ``s = 1 / std(z)`` of the first latent batch
   (Rombach et al. §4.3.2, the "scale factor"), kept in the checkpoint. Labels condition ε_θ
   through its class embedding (with the null label ∅ for classifier-free guidance, as in
   :mod:`generators.diffusion`); a mask is averaged onto the latent grid and concatenated to
   ``z_t`` as one more input channel (Med-DDPM-style concatenation at latent resolution).

Sampling is DDIM (:func:`generators.diffusion.sample_loop`) in latent space, without clipping
the predicted ``z_0`` (latents are not bounded like images), then ``x = D(z_0 / s)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from synthcohort.generators.base import Batch, Generator
from synthcohort.generators.configs import LatentDiffusionConfig
from synthcohort.generators.diffusion import noised_batch, sample_loop
from synthcohort.generators.ema import EMA
from synthcohort.generators.nets.autoencoder_kl import LatentAutoencoder
from synthcohort.generators.nets.denoiser_unet import DenoiserUNet
from synthcohort.generators.registry import register


@register("latent-diffusion")
class LatentDiffusion(Generator):
    """See the module docstring. ``ae`` the autoencoder (E, D), ``eps_model`` ε_θ on the latent
    grid, ``eps_ema`` its sampling copy, ``scale`` s (None until the diffusion phase starts)."""

    Config = LatentDiffusionConfig
    config: LatentDiffusionConfig

    def build(self) -> None:
        s, c = self.spec, self.config
        fmt = self.memory_format
        self.ae = LatentAutoencoder(
            s.spatial_dims, s.in_channels, s.image_size, channels=tuple(c.ae_channels),
            latent_channels=c.latent_channels, num_res_blocks=c.ae_num_res_blocks,
            norm_num_groups=c.ae_norm_num_groups, attention=c.ae_attention,
        ).to(self.device, memory_format=fmt)
        self.null_label = s.num_classes  # the extra embedding row ∅ for guidance
        self.eps_model = DenoiserUNet(
            s.spatial_dims, c.latent_channels + (1 if s.mask_conditioned else 0), c.latent_channels,
            self.ae.latent_size, num_class_embeds=s.num_classes + 1, channels=tuple(c.channels),
            attention_levels=tuple(c.attention_levels), layers_per_block=c.layers_per_block,
            norm_num_groups=c.norm_num_groups, head_channels=c.head_channels,
        ).to(self.device, memory_format=fmt)
        self.eps_ema = EMA(self.eps_model, c.ema_decay)
        self.opt_ae = torch.optim.Adam(self.ae.parameters(), lr=c.ae_lr)
        self.opt = torch.optim.Adam(self.eps_model.parameters(), lr=c.lr)
        self.scale: float | None = None
        self.train_scheduler = DDPMScheduler(num_train_timesteps=c.num_train_timesteps,
                                             beta_schedule=c.beta_schedule)

    def sampling_scheduler(self) -> DDIMScheduler:
        """A fresh DDIM schedule with the training β's; no clipping of ẑ_0 (latents are unbounded)."""
        c = self.config
        return DDIMScheduler(num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule,
                             clip_sample=False, set_alpha_to_one=True)

    def state_modules(self) -> dict[str, Any]:
        return {"ae": self.ae, "opt_ae": self.opt_ae, "eps_model": self.eps_model, "eps_ema": self.eps_ema,
                "opt": self.opt}

    def extra_state(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.scale = state.get("scale")

    # -- training ---------------------------------------------------------------------------------
    def _posterior_sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, μ, σ) with z = μ + σ ⊙ ε, ε drawn from ``self.rng`` (MONAI's own draw uses the global RNG)."""
        mu, sigma = self.ae.encode(x)
        eps = torch.randn(mu.shape, generator=self.rng, device=self.device).contiguous(
            memory_format=self.memory_format)
        return mu + sigma * eps, mu, sigma

    def train_step(self, next_batch: Callable[[], Batch]) -> dict[str, torch.Tensor]:
        if self.step < self.config.ae_steps:
            return self._autoencoder_step(next_batch())
        return self._diffusion_step(next_batch())

    def _autoencoder_step(self, b: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        with self.autocast():
            z, mu, sigma = self._posterior_sample(b.images)
            out = self.ae.decode(z).float()
        mu, sigma = mu.float(), sigma.float()
        if c.ae_likelihood == "bernoulli":  # targets in [0, 1]; soft targets are plain cross-entropy
            recon, name = F.binary_cross_entropy_with_logits(out, (b.images + 1) / 2), "recon_bce"
        else:
            recon, name = F.l1_loss(out, b.images), "recon_l1"
        var = sigma.pow(2)
        kl = 0.5 * (mu.pow(2) + var - var.log() - 1).flatten(1).sum(1).mean()
        loss = recon + c.kl_weight * kl
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_ae.step()
        return {"loss": loss.detach(), name: recon.detach(), "kl": kl.detach()}

    def decode_image(self, z: torch.Tensor) -> torch.Tensor:
        """The image in [−1, 1] scale that latent z decodes to: D(z) itself (Laplace) or
        2σ(D(z)) − 1 (Bernoulli logits)."""
        out = self.ae.decode(z)
        return 2 * torch.sigmoid(out) - 1 if self.config.ae_likelihood == "bernoulli" else out

    def _latent_mask(self, m: torch.Tensor | None) -> torch.Tensor | None:
        return None if m is None else self.ae.to_latent_grid(m.float()) * 2.0 - 1.0

    def _input(self, z_t: torch.Tensor, m_lat: torch.Tensor | None) -> torch.Tensor:
        return z_t if m_lat is None else torch.cat([z_t, m_lat.to(z_t.dtype)], dim=1)

    def _diffusion_step(self, b: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        with torch.no_grad(), self.autocast():
            z, _, _ = self._posterior_sample(b.images)
        z = z.float()
        if self.scale is None:  # Rombach et al.: unit-variance latents, s from the first batch
            self.scale = float(1.0 / z.std())
        z_t, eps, t, y = noised_batch(z * self.scale, b.labels, self.train_scheduler, p_uncond=c.p_uncond,
                                      null_label=self.null_label, rng=self.rng, memory_format=self.memory_format)
        with self.autocast():
            eps_hat = self.eps_model(self._input(z_t, self._latent_mask(b.masks)), t, y)
        loss = F.mse_loss(eps_hat.float(), eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.eps_model.parameters(), c.grad_clip)
        self.opt.step()
        self.eps_ema.update(self.eps_model, self.step - c.ae_steps)  # EMA warm-up from the phase's start
        return {"loss": loss.detach(), "grad_norm": grad_norm.detach()}

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, labels: torch.Tensor, masks: torch.Tensor | None,
                 rng: torch.Generator) -> torch.Tensor:
        c = self.config
        net = self.eps_ema.shadow
        w = c.guidance_scale
        m_lat = self._latent_mask(masks)

        def eps_fn(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            inp = self._input(z_t, m_lat)
            with self.autocast():
                if w == 1.0:
                    return net(inp, t, labels).float()
                null = torch.full_like(labels, self.null_label)
                eps_c, eps_u = net(torch.cat([inp, inp]), torch.cat([t, t]),
                                   torch.cat([labels, null])).float().chunk(2)
            return eps_u + w * (eps_c - eps_u)

        shape = (labels.shape[0], c.latent_channels, *self.ae.latent_size)
        z_0 = sample_loop(eps_fn, self.sampling_scheduler(), shape, steps=c.sampling_steps, eta=c.eta,
                          rng=rng, device=self.device, memory_format=self.memory_format)
        with self.autocast():  # s is 1 before the diffusion phase has started
            return self.decode_image(z_0 / (self.scale or 1.0)).float()
