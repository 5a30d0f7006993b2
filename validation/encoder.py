"""The domain encoder: a small CNN trained on the dataset's real training split, whose pooled
features are the default space for every validation score (FD, KID, PRDC, bins, copies).

Inception-v3 features describe ImageNet photographs; for 28×28 ultrasound or 3D CT a network
trained on the modality itself separates what matters (Kynkäänniemi et al. 2023, "The Role of
ImageNet Classes in Fréchet Inception Distance", ICLR, show FID can be swayed by ImageNet
semantics). Objective: supervised class prediction when the split has ≥ 2 classes, otherwise
self-supervised rotation prediction (Gidaris et al. 2018, ICLR). Trained once per dataset
version and configuration (seeded) and cached under ``cache_dir/encoders``.

``exclude`` keeps the validation's real reference sample (``validation.reference``) out of the
training set, so that real-vs-real references are as unseen by the encoder as synthetic images
are; the excluded index set is part of the cache key and of the extractor's name.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthcohort.core import layout
from synthcohort.core.atomic import atomic_write_bytes
from synthcohort.core.device import select_device
from synthcohort.core.seeding import derive_seed, torch_generator
from synthcohort.core.settings import get_settings
from synthcohort.validation.reference import indices_fingerprint

ENCODER_VERSION = 2


def _conv(spatial_dims: int):
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


class DomainEncoder(nn.Module):
    """Three stride-2 conv blocks and a stride-1 projection → global average pool →
    ``feature_dim`` features; a linear head is used only for training. Small on purpose: it is
    trained per dataset version on CPU workers too."""

    def __init__(self, spatial_dims: int, in_channels: int, feature_dim: int, num_outputs: int):
        super().__init__()
        conv = _conv(spatial_dims)
        widths = (16, 32, 64)
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [conv(c, w, 3, stride=2, padding=1), nn.GroupNorm(4, w), nn.SiLU()]
            c = w
        layers += [conv(c, feature_dim, 3, stride=1, padding=1), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(feature_dim, num_outputs)
        self.spatial_dims = spatial_dims

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(2).mean(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def state_dict_sha256(module: nn.Module | dict[str, torch.Tensor]) -> str:
    """sha256 over the state dict's names, dtypes, shapes and tensor bytes (in key order)."""
    h = hashlib.sha256()
    state = module.state_dict() if isinstance(module, nn.Module) else module
    for name, t in state.items():
        arr = t.detach().cpu().contiguous().numpy()
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class FeatureExtractor:
    """A named, hashed feature function: images (N, C, *spatial) in [0, 1] → (N, d) float64."""

    name: str
    sha256: str
    module: nn.Module
    dim: int
    batch_size: int = 256
    excluded: str | None = None  # fingerprint of the train indices it was not trained on

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.module.eval()
        out = []
        for start in range(0, len(images), self.batch_size):
            x = np.nan_to_num(np.asarray(images[start:start + self.batch_size], dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
            out.append(self._embed(torch.from_numpy(x).to(self.device)).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.features(x * 2.0 - 1.0)

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


def rotation_plane(spatial: tuple[int, ...]) -> tuple[tuple[int, int], int]:
    """(axes, number of pretext classes) for the rotation task: a plane whose two sides are
    equal allows all four quarter turns; otherwise (a 16×24 slice) only 0° and 180° keep the
    shape, so the task has two classes."""
    n = len(spatial)
    for a in range(n - 2, -1, -1):
        for b in range(n - 1, a, -1):
            if spatial[a] == spatial[b]:
                return (a - n, b - n), 4
    return (-2, -1), 2


def _rotate(x: torch.Tensor, k: torch.Tensor, dims: tuple[int, int]) -> torch.Tensor:
    """Rotate each sample by k·90° in the plane ``dims`` (2D and 3D alike)."""
    return torch.stack([torch.rot90(xi, int(ki), dims=dims) for xi, ki in zip(x, k)])


def train_domain_encoder(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    feature_dim: int = 32,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 2e-3,
    device: torch.device | None = None,
) -> DomainEncoder:
    """Train the encoder on real training images (seeded; same inputs and device → same weights)."""
    device = device or select_device(get_settings().device)
    spatial_dims = images.ndim - 2
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    classes = np.unique(labels)
    supervised = len(classes) >= 2
    y_all = np.searchsorted(classes, labels) if supervised else np.zeros(len(labels), np.int64)
    rotate = not supervised  # rotation pretext only when there is nothing to classify
    plane, turns = rotation_plane(tuple(images.shape[2:]))
    n_out = len(classes) if supervised else 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "encoder-init"))
        net = DomainEncoder(spatial_dims, images.shape[1], feature_dim, n_out).to(device)
    gen = torch_generator(derive_seed(seed, "encoder-batches"))
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)) * 2.0 - 1.0
    y_t = torch.from_numpy(y_all)
    # class-balanced loss: the rare class must shape the features as much as the common one
    weight = None
    if supervised:
        counts = np.bincount(y_all, minlength=n_out).astype(np.float64)
        weight = torch.tensor(counts.sum() / (n_out * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    net.train()
    n = len(x_all)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            if len(idx) < 2:
                continue
            x, y = x_all[idx], y_t[idx]
            if rotate:
                y = torch.randint(0, turns, (len(idx),), generator=gen) * (4 // turns)  # quarter turns
                x = _rotate(x, y, plane)
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x.to(device)), y.to(device)).backward()
            opt.step()
    net.eval()
    return net.cpu() if device.type != "cpu" else net


def arrays_key(*arrays: np.ndarray) -> str:
    """Content address of arrays, used when no dataset id names the training data."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return "arr-" + h.hexdigest()[:16]


def domain_encoder(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    dataset_key: str | None = None,
    seed: int = 0,
    feature_dim: int = 32,
    epochs: int = 8,
    batch_size: int = 64,
    cache_dir: Path | None = None,
    exclude: np.ndarray | None = None,
) -> FeatureExtractor:
    """The cached domain encoder of a dataset version (trained on first use), trained on all
    of ``images`` except the indices in ``exclude`` (the validation's reference sample)."""

    spatial_dims = images.ndim - 2
    key = dataset_key or arrays_key(images, labels)
    cfg = {"v": ENCODER_VERSION, "seed": seed, "dim": feature_dim, "epochs": epochs, "bs": batch_size}
    excluded, keep = None, slice(None)
    if exclude is not None and len(exclude):
        excluded = indices_fingerprint(exclude)
        cfg["exclude"] = excluded  # one encoder per (dataset, class, reference seed)
        keep = np.ones(len(images), dtype=bool)
        keep[np.asarray(exclude, dtype=np.int64)] = False
    labels = np.asarray(labels).reshape(-1)[keep]
    cfg_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    path = (cache_dir or layout.cache_dir() / "encoders") / f"{key}-{cfg_hash}.pt"
    n_out = len(np.unique(labels))
    n_out = n_out if n_out >= 2 else 4
    net = None
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            net = DomainEncoder(spatial_dims, images.shape[1], feature_dim, n_out)
            net.load_state_dict(blob)
        except Exception:  # stale or corrupt cache entry: retrain and overwrite
            net = None
    if net is None:
        net = train_domain_encoder(images[keep], labels, seed=seed, feature_dim=feature_dim, epochs=epochs, batch_size=batch_size)
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        atomic_write_bytes(path, buf.getvalue())
    net.eval()
    sha = state_dict_sha256(net)
    net.to(select_device(get_settings().device))
    name = f"domain-encoder-{spatial_dims}d(dim={feature_dim},epochs={epochs},seed={seed},data={key}"
    name += f",without={excluded})" if excluded else ")"
    return FeatureExtractor(name=name, sha256=sha, module=net, dim=feature_dim, excluded=excluded)
