"""A small MONAI UNet trained (seeded) on image/mask pairs: the measuring instrument of the Dice
gate (``validation.dice``), trained once on the real train pairs (cached, like the domain
encoder) and once on each cohort's synthetic pairs.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from synthcohort.core import layout
from synthcohort.core.atomic import atomic_write_bytes
from synthcohort.core.device import select_device
from synthcohort.core.errors import InvalidInputError
from synthcohort.core.seeding import derive_seed, torch_generator
from synthcohort.core.settings import get_settings
from synthcohort.validation.encoder import arrays_key

SEGMENTER_VERSION = 1  # part of the cache key: bump when the network or its training changes


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


def real_segmenter(
    images: np.ndarray, masks: np.ndarray, *, dataset_key: str | None, seed: int, epochs: int, batch_size: int,
    cache_dir: Path | None = None,
) -> torch.nn.Module:
    """``train_segmenter`` on the real train pairs, cached under ``cache_dir/segmenters`` (default:
    the data root's cache) by dataset version and training settings, so that every cohort of a
    dataset is measured against the same real-trained segmenter without retraining it."""
    key = dataset_key or arrays_key(images, masks)
    cfg = {"v": SEGMENTER_VERSION, "seed": seed, "epochs": epochs, "bs": batch_size, "n": len(images)}
    cfg_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    path = (cache_dir or layout.cache_dir() / "segmenters") / f"{key}-{cfg_hash}.pt"
    if path.is_file():
        try:
            net = build_segmenter(images.ndim - 2, images.shape[1])
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            net.to(select_device(get_settings().device)).eval()
            return net
        except Exception:  # stale or corrupt cache entry: retrain and overwrite
            pass
    net = train_segmenter(images, masks, seed=seed, epochs=epochs, batch_size=batch_size)
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, buf)
    atomic_write_bytes(path, buf.getvalue())
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
