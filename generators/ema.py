"""Exponential moving average of network weights, the copy every family samples from.

EMA weights give visibly better samples than the last iterate for GANs (Yazıcı et al. 2019,
"The Unusual Effectiveness of Averaging in GAN Training") and are standard for DDPM
(Ho et al. 2020). A warm-up decay ``min(decay, (1 + t) / (10 + t))`` (as in TensorFlow's
``ExponentialMovingAverage`` with ``num_updates``) lets short runs leave the random
initialisation behind instead of averaging it in for thousands of steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Holds ``shadow``, an averaged copy of ``model`` (parameters averaged, buffers copied).

    It is an ``nn.Module`` so that its ``state_dict`` goes into checkpoints like any network.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        super().__init__()
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self, num_updates: int) -> float:
        """Decay used at update ``num_updates`` (0-based), with the warm-up if enabled."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + num_updates) / (10.0 + num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module, num_updates: int) -> None:
        """shadow ← d · shadow + (1 − d) · model; ``num_updates`` is the caller's step
        (an int kept on the host, so no device sync is needed to read it)."""
        d = self.current_decay(int(num_updates))
        ema_p = [p for p in self.shadow.parameters()]
        cur_p = [p.detach() for p in model.parameters()]
        if ema_p:
            torch._foreach_lerp_(ema_p, cur_p, 1.0 - d)
        for b_ema, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)
        self.num_updates.fill_(int(num_updates) + 1)

    def forward(self, *args, **kwargs):
        return self.shadow(*args, **kwargs)
