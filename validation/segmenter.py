"""A small MONAI UNet trained (seeded) on real image/mask pairs of the training split.

It is the measuring instrument of the Dice gate: if synthetic images honour their conditioning
masks, a segmenter that learnt anatomy from real data finds those masks in them about as well as
it finds the real masks in real hold-out images.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from synthcohort.core.device import select_device
from synthcohort.core.errors import InvalidInputError
from synthcohort.core.seeding import derive_seed, torch_generator
from synthcohort.core.settings import get_settings


def build_segmenter(spatial_dims: int, in_channels: int) -> torch.nn.Module:
    return UNet(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=2,
        channels=(8, 16, 32), strides=(2, 2), num_res_units=1,
    )


def train_segmenter(
    images: np.ndarray, masks: np.ndarray, *, seed: int, epochs: int = 40, batch_size: int = 8, lr: float = 3e-3
) -> torch.nn.Module:
    """Train on (N, C, *spatial) images in [0, 1] and (N, 1, *spatial) binary masks with Dice + CE."""

    spatial_dims = images.ndim - 2
    _check_divisible(images.shape[2:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "segmenter-init"))
        net = build_segmenter(spatial_dims, images.shape[1])
    device = select_device(get_settings().device)
    net.to(device)
    gen = torch_generator(derive_seed(seed, "segmenter-batches"))
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)) * 2.0 - 1.0
    y_all = torch.from_numpy((np.asarray(masks) > 0).astype(np.int64))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(x_all), batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x_all[idx].to(device)), y_all[idx].to(device)).backward()
            opt.step()
    net.eval()
    return net


@torch.no_grad()
def segment(net: torch.nn.Module, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Binary foreground masks (N, 1, *spatial) uint8."""
    net.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = np.nan_to_num(np.asarray(images[start:start + batch_size], dtype=np.float32))
        device = next(net.parameters()).device
        logits = net(torch.from_numpy(x).to(device) * 2.0 - 1.0)
        out.append(logits.argmax(1, keepdim=True).to(torch.uint8).cpu().numpy())
    return np.concatenate(out)


def _check_divisible(spatial: tuple[int, ...]) -> None:
    if any(s % 4 for s in spatial):
        raise InvalidInputError(
            f"image size {tuple(spatial)} must be divisible by 4 for the Dice segmenter (two stride-2 levels)",
            field="image_size",
        )
