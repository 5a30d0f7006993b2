"""Standard 2D FID features: pytorch-fid's Inception-v3 (2048-d pool features), only from a local
weights file. Nothing is ever downloaded: pytorch-fid's URL loader is replaced, while the model is
built, by a loader that reads the local file (and fails rather than fetch).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from unittest import mock

import torch
from pytorch_fid import inception as pf

from synthcohort.core.device import select_device
from synthcohort.core.settings import get_settings
from synthcohort.validation.encoder import FeatureExtractor, state_dict_sha256

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
_lock = threading.Lock()


def inception_weights_path() -> Path | None:
    """The settings' path if set and present, else the torch hub cache copy, else None."""
    configured = get_settings().inception_weights
    candidates = [Path(configured).expanduser()] if configured else []
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")).expanduser()
    candidates.append(torch_home / "hub" / "checkpoints" / WEIGHTS_NAME)
    for c in candidates:
        if c.is_file():
            return c
    return None


def missing_message() -> str:
    configured = get_settings().inception_weights
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")).expanduser()
    where = [str(configured)] if configured else []
    where.append(str(torch_home / "hub" / "checkpoints" / WEIGHTS_NAME))
    return f"Inception weights not found at {' or '.join(where)}; standard FID not computed"


class _InceptionModule(torch.nn.Module):
    """Grey → RGB, [0, 1] in; pool3 features out (pytorch-fid resizes to 299 and rescales)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1.0) / 2.0  # FeatureExtractor hands [-1, 1]; pytorch-fid expects [0, 1]
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.net(x)[0].flatten(1)


def load_inception(path: Path) -> FeatureExtractor:
    """Build pytorch-fid's InceptionV3 from the local file at ``path``."""

    loaded: dict[str, torch.Tensor] = {}

    def local_only(url: str, *args, **kwargs):
        loaded.update(torch.load(path, map_location="cpu", weights_only=True))
        return loaded

    with _lock, mock.patch.object(pf, "load_state_dict_from_url", local_only):
        net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    net.eval()
    sha = state_dict_sha256(loaded)  # the hash of the weights file's tensors
    module = _InceptionModule(net).to(select_device(get_settings().device))
    return FeatureExtractor(name="pytorch-fid InceptionV3 pool3 (2048)", sha256=sha, module=module, dim=2048, batch_size=64)


def inception_features_available(spatial_dims: int) -> tuple[FeatureExtractor | None, str | None]:
    """(extractor, None) when the standard FID can be computed, else (None, the reason)."""
    if spatial_dims != 2:
        return None, "standard FID is defined for 2D images only; not computed for 3D"
    path = inception_weights_path()
    if path is None:
        return None, missing_message()
    try:
        return load_inception(path), None
    except Exception as exc:  # a corrupt file is reported, not fatal to validation
        return None, f"Inception weights at {path} could not be loaded ({exc.__class__.__name__}); standard FID not computed"
