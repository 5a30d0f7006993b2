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
