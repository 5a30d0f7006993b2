"""Seeds. Every stochastic step takes an explicit seed; these build the RNGs from it.

torch is imported only inside ``torch_generator``: the plumbing floor is imported by the API and
the CLI, which never load torch (the torch boundary, ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def derive_seed(seed: int, *names: str | int) -> int:
    """A stable sub-seed for a named purpose, so parts of a run don't share one stream."""
    h = hashlib.sha256(repr((int(seed), *names)).encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed))
