"""Presets: family settings that follow from the data, merged under the user's own config.

Two rules, both under ``preset="auto"``. *Small data*: the settings used when a class is small and
the user gave no config (below). *Binary data* (:data:`BINARY_DATA`): images holding two values only
(shapes, masks) get a decoder likelihood that can draw them; they apply under a user config too,
since they fix what the data is, not a taste in settings, and a field the user sets still wins.

Minority classes hold 60–400 training images at 28–64 px. The families' own defaults follow
their papers (StyleGAN2-ADA's auto config has 512-wide layers, DynGAN's ADA moves p over 100k
images); on two CPU cores in a 15-minute budget those either take too few steps or let the
discriminator memorise the class. A preset is a set of config fields merged *under* the user's
own config; the model record keeps the preset's name and the resulting config.

How each preset was chosen is measured, not assumed: ``benchmarks/generator_quality.py`` on
BreastMNIST (147 malignant / 399 benign train images, 28×28), 2 minutes per variant on two CPU
cores, 4×4-pooled pixel Fréchet distance of 256 malignant samples to the 21 real val images
(real train vs val: 0.045). The numbers are in :data:`EVIDENCE`. At the quality benchmark's full
15-minute budget, variants of the dyngan preset were compared by S_FID (:data:`EVIDENCE_15MIN`):
neither its settings (learning rate, R1 γ, width) nor residual blocks move it beyond the noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np

from synthcohort.core.errors import InvalidInputError

PresetName = Literal["auto", "small-data", "none"]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)

SMALL_CLASS = 1000  # train images of the target class at or below which "auto" means small-data
SMALL_SIDE = 64  # largest side (px) the small-data presets were measured for

SMALL_DATA: dict[str, dict[str, Any]] = {
    "wgan-gp": {"g_channels": 32, "d_channels": 32, "lr": 1e-4, "n_critic": 5, "batch_size": 32},
    "stylegan2": {"z_dim": 128, "w_dim": 128, "channel_base": 1024, "channel_max": 128, "batch_size": 32,
                  "ada_kimg": 100.0, "augment": True},
    "dyngan": {"width": 64, "batch_size": 32, "ada_kimg": 100.0, "augment": True},
    "diffusion": {"channels": (32, 64), "attention_levels": (False, True), "beta_schedule": "squaredcos_cap_v2",
                  "sampling_steps": 25, "batch_size": 32},
    "latent-diffusion": {},  # not measured on a small 2D class yet: the family's defaults (chosen for 3D)
}

# Binary images: a latent-diffusion autoencoder trained on L1 reconstructs AdrenalMNIST3D (2 % foreground,
# values 0/1) as the empty volume (shape Dice 0.000 after 1,500 steps); with a Bernoulli decoder its
# shape Dice is 0.88–0.91 and the cohort's outliers fall from 836 to 2 of 836
# (benchmarks/RESULTS.md, "Why the adrenal cohorts are empty"). Pixel-space families draw images directly.
BINARY_DATA: dict[str, dict[str, Any]] = {"latent-diffusion": {"ae_likelihood": "bernoulli"}}

# family → variant → (steps reached in 2 min, pooled-pixel FD after training); one seed each, so
# differences under ~0.02 are within what a second seed could change. The chosen variant is first.
EVIDENCE: dict[str, dict[str, tuple[int, float]]] = {
    "wgan-gp": {"32 channels (chosen)": (300, 0.126), "64 channels": (100, 0.170)},
    "stylegan2": {"channel_base 1024, max 128, ADA (chosen)": (220, 0.085),
                  "same without ADA": (220, 0.094),
                  "channel_base 4096, max 256 (ADA auto widths)": (20, 0.258)},
    "dyngan": {"ADA (chosen)": (840, 0.093), "no augmentation": (900, 0.112)},
    "diffusion": {"cosine schedule, 25 DDIM steps (chosen)": (440, 0.305),
                  "cosine, 50 DDIM steps": (440, 0.355), "cosine, 10": (440, 0.352), "cosine, 100": (440, 0.596),
                  "linear schedule, 50 DDIM steps": (440, 0.622)},
}

# family → variant → S_FID of its BreastMNIST malignant cohort (252 samples) at validation seeds 0–4,
# after the 15-minute budget (`benchmarks/quality.py --families dyngan --config … --steps N
# --similarity-only --validation-seeds 5 --threads 1`; N = the steps the variant reaches in the time
# the preset takes for 6300). One seed's S_FID moves by about ±0.1 at this class size, so variants
# are compared over the five. The DCGAN-block rows ran on one machine, the residual rows on another
# (residual width 48 and 64 side by side, 39 minutes each).
# Residual width 48 has the highest median (0.933), but not a better generator: over the seeds both
# share (1–4) its mean is 0.876 against the preset's 0.880, and trained at seed 1 it scores 0.796 0.866
# 0.876 1.044 0.815 (validation seeds 1–5) with minority recall .627 against random oversampling's .754.
# On PneumoniaMNIST normal it is clearly worse: 0.508 0.462 0.681 0.482 0.572 (the preset: 0.699 at seed 0).
EVIDENCE_15MIN: dict[str, dict[str, tuple[float, ...]]] = {
    "dyngan": {"preset: DCGAN blocks, width 64, lr 2e-3, R1 γ 1, 6300 steps (chosen)": (0.879, 0.748, 0.847, 0.877, 1.047),
               "width 96, 3550 steps (same time)": (0.941, 0.769, 0.867, 0.859, 0.949),
               "lr 1e-3": (0.896, 0.801, 0.871, 0.855, 1.009),
               "R1 γ 4": (0.905, 0.785, 0.876, 0.850, 0.978),
               "R1 γ 0.1": (0.508, 0.474, 0.672, 0.616, 0.524),
               "residual blocks, width 48, 3900 steps (same time)": (0.933, 0.761, 0.933, 0.823, 0.985),
               "residual blocks, width 64, 2780 steps (same time)": (0.878, 0.730, 0.959, 0.813, 0.992)},
}


def is_binary(images: np.ndarray, chunk: int = 64) -> bool:
    """True when ``images`` (N, ...) hold two distinct values at most (a binary shape or mask in any
    scale). Reads ``chunk`` images at a time and stops at the first third value, so an intensity
    dataset (a memory map, say) costs one chunk."""
    seen: set = set()
    for start in range(0, len(images), chunk):
        seen.update(np.unique(np.asarray(images[start:start + chunk])).tolist())
        if len(seen) > 2:
            return False
    return bool(seen)


def resolve_preset(preset: str, family: str, *, class_train_images: int, spatial_dims: int,
                   image_size: Sequence[int], user_config: dict | None,
                   images: np.ndarray | None = None) -> tuple[str, dict[str, Any]]:
    """(the presets applied, their fields). "auto" applies small-data to a 2D class of at most
    ``SMALL_CLASS`` train images and ``SMALL_SIDE`` px when the user gave no config; "small-data"
    applies it whatever the config; under either, the binary-data fields apply when the train
    ``images`` are binary (read only for a family that has such fields; the API passes none and
    checks the rest). "none" applies nothing. The name joins the rules applied
    ("small-data+binary-data")."""
    if preset not in PRESET_NAMES:
        raise InvalidInputError(f"unknown preset {preset!r}; known: {', '.join(PRESET_NAMES)}", field="preset")
    if preset == "none":
        return "none", {}
    small = preset == "small-data" or (
        spatial_dims == 2 and class_train_images <= SMALL_CLASS and max(image_size) <= SMALL_SIDE and not user_config)
    applied, fields = [], {}
    if small:
        applied.append("small-data")
        fields.update(SMALL_DATA.get(family, {}))
    if family in BINARY_DATA and images is not None and is_binary(images):
        applied.append("binary-data")
        fields.update(BINARY_DATA[family])
    return "+".join(applied) or "none", fields
