"""StyleGAN2 with adaptive discriminator augmentation (ADA), class-conditional, 2D.

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (networks, lazy
R1, path-length regularisation, style mixing) and Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data" (ADA, conditioning, small-data defaults). Minority
classes hold 60–400 images, exactly the regime where the discriminator overfits and ADA
helps; the defaults follow the paper's "auto" configuration (2 mapping layers,
γ = 0.0002 · res² / batch, EMA of G for sampling).

Images of any size up to 1024 are padded (edge replication, centred) to the next power of two
≥ 32 for the networks and cropped back on output, so ``sample()`` returns the dataset's size
(e.g. 28×28 MedMNIST trains at 32×32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from synthcohort.core.errors import InvalidInputError
from synthcohort.generators.augment import AdaptiveP, AugmentPipe
from synthcohort.generators.base import Batch, Generator
from synthcohort.generators.configs import StyleGAN2Config
from synthcohort.generators.ema import EMA
from synthcohort.generators.losses import discriminator_step, generator_loss
from synthcohort.generators.nets.stylegan2_discriminator import StyleGAN2Discriminator
from synthcohort.generators.nets.stylegan2_generator import StyleGAN2Generator
from synthcohort.generators.registry import register


@dataclass(frozen=True)
class Canvas:
    """A square power-of-two canvas for networks that need one; pads by edge replication."""

    height: int
    width: int
    side: int

    @classmethod
    def for_size(cls, image_size: tuple[int, ...], min_side: int = 32, max_side: int = 1024) -> Canvas:
        if len(image_size) != 2:
            raise InvalidInputError(f"needs 2D images, got image_size {tuple(image_size)}", field="image_size")
        h, w = (int(v) for v in image_size)
        side = max(min_side, 2 ** math.ceil(math.log2(max(h, w, 1))))
        if side > max_side:
            raise InvalidInputError(f"images of {h}×{w} exceed the largest supported side {max_side}",
                                    field="image_size")
        return cls(h, w, side)

    def _pads(self) -> tuple[int, int, int, int]:
        dh, dw = self.side - self.height, self.side - self.width
        return dw // 2, dw - dw // 2, dh // 2, dh - dh // 2  # left, right, top, bottom

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        if (self.height, self.width) == (self.side, self.side):
            return x
        return F.pad(x, self._pads(), mode="replicate")

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        left, _, top, _ = self._pads()
        return x[..., top:top + self.height, left:left + self.width]




@register("stylegan2")
class StyleGAN2(Generator):
    Config = StyleGAN2Config
    config: StyleGAN2Config

    def build(self) -> None:
        spec, cfg = self.spec, self.config
        if spec.spatial_dims != 2:
            raise InvalidInputError("stylegan2 handles 2D images only; use diffusion or wgan_gp for 3D",
                                    field="generator")
        if spec.mask_conditioned:
            raise InvalidInputError("stylegan2 is not mask-conditioned; use a mask-conditioned family",
                                    field="generator")
        self.canvas = Canvas.for_size(spec.image_size)
        res = self.canvas.side
        ncls = max(1, spec.num_classes)
        self.G = StyleGAN2Generator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, num_classes=ncls, resolution=res,
                                    img_channels=spec.in_channels, mapping_layers=cfg.mapping_layers,
                                    channel_base=cfg.channel_base, channel_max=cfg.channel_max).to(self.device)
        self.D = StyleGAN2Discriminator(num_classes=ncls, resolution=res, img_channels=spec.in_channels,
                                        channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                        mbstd_group=cfg.mbstd_group).to(self.device)
        self.G_ema = EMA(self.G, cfg.ema_decay).to(self.device)
        self.gamma = cfg.r1_gamma if cfg.r1_gamma is not None else 0.0002 * res * res / cfg.batch_size

        def adam(params, interval: int, lazy: bool) -> torch.optim.Adam:
            # lazy regularisation: rescale lr and betas (StyleGAN2 Appendix B)
            ratio = interval / (interval + 1) if lazy else 1.0
            b1, b2 = cfg.betas
            return torch.optim.Adam(params, lr=cfg.lr * ratio, betas=(b1 ** ratio, b2 ** ratio), eps=1e-8)

        self.opt_g = adam(self.G.parameters(), cfg.pl_interval, cfg.pl_weight > 0)
        self.opt_d = adam(self.D.parameters(), cfg.r1_interval, self.gamma > 0)
        self.augment_pipe = AugmentPipe()
        self.ada = AdaptiveP(target=cfg.ada_target, interval=cfg.ada_interval, kimg=cfg.ada_kimg,
                             batch_size=cfg.batch_size, p_init=cfg.ada_p_init, device=self.device)
        self.pl_mean = torch.zeros((), device=self.device)
        self._r1 = torch.zeros((), device=self.device)
        self._pl = torch.zeros((), device=self.device)

    # -- training --------------------------------------------------------------------------
    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment_pipe(x, self.ada.p, self.rng) if self.config.augment else x

    def train_step(self, next_batch: Callable[[], Batch]) -> dict[str, torch.Tensor]:
        cfg = self.config
        batch = next_batch()
        real, c = self.canvas.pad(batch.images), batch.labels

        # Discriminator: non-saturating logistic loss, lazy R1 on the (un-augmented) reals.
        do_r1 = self.gamma > 0 and self.step % cfg.r1_interval == 0
        with torch.no_grad():
            fake = self.G(c, self.rng, cfg.style_mixing)
        loss_d, d_real, r1 = discriminator_step(self.D, self.opt_d, real, c, fake, c, self._aug,
                                                gamma=self.gamma, interval=cfg.r1_interval, do_r1=do_r1)
        if r1 is not None:
            self._r1 = r1
        if cfg.augment:
            self.ada.observe(d_real)
            self.ada.update()

        # Generator: non-saturating loss; optional lazy path-length regularisation.
        self.D.requires_grad_(False)
        fake = self.G(c, self.rng, cfg.style_mixing)
        loss_g = generator_loss(self.D(self._aug(fake), c))
        total_g = loss_g
        if cfg.pl_weight > 0 and self.step % cfg.pl_interval == 0:
            total_g = total_g + self._path_length_penalty(c) * cfg.pl_weight * cfg.pl_interval
        self.opt_g.zero_grad(set_to_none=True)
        total_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.G_ema.update(self.G, self.step)

        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "r1": self._r1.detach(),
                "pl": self._pl.detach(), "p": self.ada.p.clone(), "r_t": self.ada.r_t.clone()}

    def _path_length_penalty(self, c: torch.Tensor) -> torch.Tensor:
        """StyleGAN2 Eq. 4: E[(||J_w^T y||_2 - a)^2], a the running mean of the lengths."""
        n = max(1, c.shape[0] // 2)
        ws = self.G.ws(c[:n], self.rng, self.config.style_mixing)
        img = self.G.synthesis(ws, self.rng)
        y = torch.randn(img.shape, generator=self.rng, device=img.device) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
        self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), self.config.pl_decay)
        self._pl = (lengths - self.pl_mean).square().mean()
        return self._pl

    # -- sampling and state ------------------------------------------------------------------
    def generate(self, labels: torch.Tensor, masks: torch.Tensor | None, rng: torch.Generator) -> torch.Tensor:
        return self.canvas.crop(self.G_ema(labels, rng, 0.0))

    @torch.no_grad()
    def discriminate(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """D's logit, scored in batches of ``batch_size`` as in training: the minibatch-stddev
        layer makes an image's logit depend on the others in its group."""
        x, b = self.canvas.pad(x), self.config.batch_size
        return torch.cat([self.D(x[s:s + b], labels[s:s + b]) for s in range(0, len(x), b)])

    def state_modules(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema, "opt_g": self.opt_g, "opt_d": self.opt_d}

    def extra_state(self) -> dict[str, Any]:
        return {"ada": self.ada.state_dict(), "pl_mean": self.pl_mean.cpu(),
                "r1": self._r1.detach().cpu(), "pl": self._pl.detach().cpu()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "ada" in state:
            self.ada.load_state_dict(state["ada"])
        if "pl_mean" in state:
            self.pl_mean = state["pl_mean"].to(self.device)
            self._r1 = state["r1"].to(self.device)
            self._pl = state["pl"].to(self.device)
