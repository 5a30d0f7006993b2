"""Losses shared by the non-saturating GAN families (StyleGAN2, DynGAN).

Non-saturating logistic loss: Goodfellow et al. 2014; R1 regularisation: Mescheder et al.
2018, "Which Training Methods for GANs do actually Converge?", applied lazily (every
``interval`` steps, scaled by ``interval``) as in Karras et al. 2020 (StyleGAN2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """softplus(D(G(z))) + softplus(−D(x)): the logistic loss of the discriminator."""
    return F.softplus(d_fake).mean() + F.softplus(-d_real).mean()


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """softplus(−D(G(z))): the non-saturating generator loss."""
    return F.softplus(-d_fake).mean()


def r1_penalty(d_real: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """E‖∇ₓD(x)‖² over real images ``x`` (which must require grad), kept differentiable."""
    (grad,) = torch.autograd.grad(d_real.sum(), x, create_graph=True)
    return grad.square().sum(dim=tuple(range(1, grad.ndim))).mean()


def discriminator_step(
    D: torch.nn.Module,
    opt: torch.optim.Optimizer,
    real: torch.Tensor,
    y_real: torch.Tensor,
    fake: torch.Tensor,
    y_fake: torch.Tensor,
    augment,
    *,
    gamma: float,
    interval: int,
    do_r1: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One discriminator update: logistic loss on augmented reals and fakes, plus lazy R1
    (γ/2 · interval · R1) on the reals when ``do_r1``. Returns (loss, D(real), R1 or None)."""
    D.requires_grad_(True)
    d_fake = D(augment(fake), y_fake)
    x = real.detach().requires_grad_(do_r1)
    d_real = D(augment(x), y_real)
    loss = discriminator_loss(d_real, d_fake)
    r1 = None
    if do_r1:
        r1 = r1_penalty(d_real, x)
        loss = loss + r1 * (gamma / 2) * interval
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, d_real, r1
