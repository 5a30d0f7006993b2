"""Class-conditional denoising diffusion, 2D or 3D, optionally mask-conditioned.

Training is DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Algorithm 1):
``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` with ``t ~ U{0..T−1}``, ``ε ~ N(0, I)``, minimise
``‖ε − ε_θ(x_t, t, y)‖²``. Sampling (``sampler``) is DDIM (Song et al. 2021, "Denoising Diffusion
Implicit Models", eq. 12) with a configurable number of steps and η (η = 0 deterministic, η = 1
DDPM-like), or DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling
of Diffusion Probabilistic Models", Algorithm 2: a second-order multistep solver of the diffusion
ODE in the data prediction x̂_0, first order at the last steps; deterministic), which needs fewer
steps. Both clip x̂_0 to [−1, 1] (DPM-Solver++'s thresholding with a maximum of 1 is that clip).
Classifier-free guidance (Ho & Salimans 2022): labels are replaced by a null
label with probability ``p_uncond`` in training, and sampling uses
``ε̃ = ε_θ(x_t, ∅) + w (ε_θ(x_t, y) − ε_θ(x_t, ∅))``. A mask is concatenated to ``x_t`` as an
extra channel.

Three parts kept apart: the network (:class:`generators.nets.DenoiserUNet`), the noise
schedule (diffusers' ``DDPMScheduler`` for training, ``DDIMScheduler`` or
``DPMSolverMultistepScheduler`` for sampling, built from the training β's only; 2D and 3D alike),
and the sampling loop (:func:`sample_loop`), which only sees a function ``ε(x_t, t)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from synthcohort.generators.base import Batch, Generator
from synthcohort.generators.configs import DiffusionConfig
from synthcohort.generators.ema import EMA
from synthcohort.generators.nets.denoiser_unet import DenoiserUNet
from synthcohort.generators.registry import register

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SamplingScheduler = DDIMScheduler | DPMSolverMultistepScheduler


def noised_batch(x_0: torch.Tensor, y: torch.Tensor, scheduler: DDPMScheduler, *, p_uncond: float, null_label: int,
                 rng: torch.Generator, memory_format: torch.memory_format = torch.contiguous_format,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DDPM training draw (Ho et al. 2020, Algorithm 1, lines 2–4): t ~ U{0..T−1}, ε ~ N(0, I),
    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε; with classifier-free guidance each label is replaced by the
    null label ∅ with probability ``p_uncond``. Returns (x_t, ε, t, y); every draw from ``rng``."""
    n, device = x_0.shape[0], x_0.device
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=rng, device=device)
    eps = torch.randn(x_0.shape, generator=rng, device=device).contiguous(memory_format=memory_format)
    x_t = scheduler.add_noise(x_0, eps, t)
    if p_uncond > 0:
        drop = torch.rand(n, generator=rng, device=device) < p_uncond
        y = torch.where(drop, torch.full_like(y, null_label), y)
    return x_t, eps, t, y


def sample_loop(eps_fn: EpsFn, scheduler: SamplingScheduler, shape: tuple[int, ...], *, steps: int,
                rng: torch.Generator, device: torch.device, eta: float = 0.0,
                memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """From x_T ~ N(0, I) to x_0 in ``steps`` steps of ``scheduler`` (DDIM, or DPM-Solver++).
    Every noise draw (x_T and, for DDIM with η > 0, each step's σ_t z) comes from ``rng``, so one
    seed gives one result bit for bit. ``scheduler`` must be fresh: it keeps the solver's history."""
    scheduler.set_timesteps(steps)  # host-side schedule: indexing it never syncs the device
    x = torch.randn(shape, generator=rng, device=device).contiguous(memory_format=memory_format)
    x = x * scheduler.init_noise_sigma
    ddim = isinstance(scheduler, DDIMScheduler)
    for t in scheduler.timesteps.tolist():
        eps = eps_fn(x, torch.full((shape[0],), t, dtype=torch.long, device=device))
        if ddim:
            z = torch.randn(shape, generator=rng, device=device) if eta > 0 else None
            x = scheduler.step(eps, t, x, eta=eta, variance_noise=z).prev_sample
        else:
            x = scheduler.step(eps, t, x).prev_sample
    return x


@register("diffusion")
class Diffusion(Generator):
    """See the module docstring. ``eps_model`` ε_θ, ``eps_ema`` the sampling copy."""

    Config = DiffusionConfig
    config: DiffusionConfig

    def build(self) -> None:
        s, c = self.spec, self.config
        self.null_label = s.num_classes  # the extra embedding row ∅ for guidance
        self.eps_model = DenoiserUNet(
            s.spatial_dims, s.in_channels + (1 if s.mask_conditioned else 0), s.in_channels,
            s.image_size, num_class_embeds=s.num_classes + 1, channels=tuple(c.channels),
            attention_levels=tuple(c.attention_levels), layers_per_block=c.layers_per_block,
            norm_num_groups=c.norm_num_groups, head_channels=c.head_channels,
        ).to(self.device, memory_format=self.memory_format)
        self.eps_ema = EMA(self.eps_model, c.ema_decay)
        self.opt = torch.optim.Adam(self.eps_model.parameters(), lr=c.lr)

        self.train_scheduler = DDPMScheduler(num_train_timesteps=c.num_train_timesteps,
                                             beta_schedule=c.beta_schedule)

    def sampling_scheduler(self) -> SamplingScheduler:
        """A fresh schedule of the configured sampler with the training β's (fresh: ``set_timesteps``
        and the multistep solver's history mutate it)."""
        c = self.config
        if c.sampler == "dpm_solver++":
            return DPMSolverMultistepScheduler(
                num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule,
                algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True,
                thresholding=True, sample_max_value=1.0)  # x̂_0 clipped to [-1, 1], as DDIM's clip_sample
        return DDIMScheduler(num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule,
                             clip_sample=True, set_alpha_to_one=True)  # ᾱ_0 = 1 as in Song et al.

    def state_modules(self) -> dict[str, Any]:
        return {"eps_model": self.eps_model, "eps_ema": self.eps_ema, "opt": self.opt}

    def _input(self, x_t: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        return x_t if m is None else torch.cat([x_t, m.to(x_t.dtype) * 2.0 - 1.0], dim=1)

    def train_step(self, next_batch: Callable[[], Batch]) -> dict[str, torch.Tensor]:
        c = self.config
        b = next_batch()
        x_t, eps, t, y = noised_batch(b.images, b.labels, self.train_scheduler, p_uncond=c.p_uncond,
                                      null_label=self.null_label, rng=self.rng, memory_format=self.memory_format)
        with self.autocast():
            eps_hat = self.eps_model(self._input(x_t, b.masks), t, y)
        loss = F.mse_loss(eps_hat.float(), eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.eps_model.parameters(), c.grad_clip)
        self.opt.step()
        self.eps_ema.update(self.eps_model, self.step)
        return {"loss": loss.detach(), "grad_norm": grad_norm.detach()}

    @torch.inference_mode()
    def generate(self, labels: torch.Tensor, masks: torch.Tensor | None,
                 rng: torch.Generator) -> torch.Tensor:
        c, s = self.config, self.spec
        net = self.eps_ema.shadow
        w = c.guidance_scale
        guided = w != 1.0

        def eps_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            inp = self._input(x_t, masks)
            with self.autocast():
                if not guided:
                    return net(inp, t, labels).float()
                null = torch.full_like(labels, self.null_label)
                eps_c, eps_u = net(torch.cat([inp, inp]), torch.cat([t, t]),
                                   torch.cat([labels, null])).float().chunk(2)
            return eps_u + w * (eps_c - eps_u)

        shape = (labels.shape[0], s.in_channels, *s.image_size)
        return sample_loop(eps_fn, self.sampling_scheduler(), shape, steps=c.sampling_steps, eta=c.eta,
                           rng=rng, device=self.device, memory_format=self.memory_format)
