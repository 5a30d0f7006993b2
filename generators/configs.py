"""Every family's hyperparameters as a pydantic model, with bounds, and a memory estimate.

Why a module of its own: the API checks a request's ``config`` at POST (422 naming
``config.<field>``) and refuses one whose training would not fit the worker's memory, and the
API process never imports torch. The families import their config from here, so the class the
API checks is the class the worker builds from. Bounds are sanity limits (a negative batch, a
width of a million), not tuning advice; unknown fields are refused (``extra="forbid"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthcohort.core.errors import InvalidInputError

Width = Annotated[int, Field(ge=1, le=4096)]
LearningRate = Annotated[float, Field(gt=0.0, le=1.0)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
Interval = Annotated[int, Field(ge=1, le=1_000_000)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class GeneratorConfig(BaseModel):
    """Hyperparameters shared by every family; families extend it with their own."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=32, ge=1, le=65536)
    ema_decay: Fraction = 0.999
    log_every: Interval = 10
    checkpoint_every: int = Field(default=0, ge=0, le=100_000_000)  # 0: only at the end
    class_weights: Literal["balanced", "data"] = "balanced"  # balanced: each class drawn equally often


class WGANGPConfig(GeneratorConfig):
    """WGAN-GP hyperparameters; defaults from Gulrajani et al. 2017 (Algorithm 1)."""

    lr: LearningRate = 1e-4  # α
    betas: tuple[Beta, Beta] = (0.5, 0.9)  # β₁, β₂
    n_critic: int = Field(default=5, ge=1, le=100)
    gp_lambda: float = Field(default=10.0, ge=0.0, le=1e4)  # λ
    z_dim: Width = 64
    g_channels: Width = 32  # generator width at full resolution
    d_channels: Width = 32  # critic width at full resolution
    embed_dim: Width = 32  # generator class embedding
    max_channels: Width = 256


class StyleGAN2Config(GeneratorConfig):
    """Defaults: the ADA paper's "auto" configuration; tests shrink widths via this config."""

    z_dim: Width = 512
    w_dim: Width = 512
    mapping_layers: int = Field(default=2, ge=1, le=16)
    channel_base: int = Field(default=16384, ge=1, le=1 << 20)  # channels at resolution r: min(max, base / r)
    channel_max: Width = 512
    lr: LearningRate = 0.0025
    betas: tuple[Beta, Beta] = (0.0, 0.99)
    r1_gamma: float | None = Field(default=None, ge=0.0, le=1e4, description="None: 0.0002 · res² / batch (ADA auto)")
    r1_interval: Interval = 16
    pl_weight: float = Field(default=0.0, ge=0.0, le=1e4)  # path-length regularisation, off by default
    pl_interval: Interval = 4
    pl_decay: Fraction = 0.01
    style_mixing: Fraction = 0.9
    mbstd_group: int = Field(default=4, ge=1, le=64)
    augment: bool = True  # ADA; False trains without augmentation (p stays 0)
    ada_target: Fraction = 0.6
    ada_interval: Interval = 4
    ada_kimg: float = Field(default=500.0, gt=0.0, le=1e6)  # images (in thousands) for p to go from 0 to 1
    ada_p_init: Fraction = 0.0


class DynGANConfig(GeneratorConfig):
    z_dim: Width = 128
    width: Width = 64
    residual: bool = False  # residual blocks in G and D (two convolutions per resolution)
    embed_dim: Width = 32
    feature_dim: Width = 128
    lr_g: LearningRate = 0.002
    lr_d: LearningRate = 0.002
    betas: tuple[Beta, Beta] = (0.0, 0.99)
    r1_gamma: float = Field(default=1.0, ge=0.0, le=1e4)
    r1_interval: Interval = 4
    # dynamic partitioning
    max_partitions: int = Field(default=8, ge=1, le=256)  # per class
    delta: float = Field(default=0.1, gt=0.0, lt=1.0)  # collapsed when the smoothed logit exceeds -log(delta)
    tau: Fraction = 0.1  # repartition a class when more than tau of its images are collapsed
    repartition_every: Interval = 2000
    monitor_every: Interval = 10  # steps between discriminator passes over the monitored images
    monitor_decay: Fraction = 0.9  # EMA decay of the per-image logit, per monitor pass
    monitor_max: int = Field(default=1024, ge=1, le=1_000_000)  # monitored images per class
    # augmentation (ADA)
    augment: bool = True
    ada_target: Fraction = 0.6
    ada_interval: Interval = 4
    ada_kimg: float = Field(default=100.0, gt=0.0, le=1e6)
    ada_p_init: Fraction = 0.0


class DenoiserConfig(GeneratorConfig):
    """The fields of a DDPM denoiser ε_θ (Ho et al. 2020) and its sampling, shared by the pixel-space
    and the latent diffusion families. Tiny defaults that train on two CPU cores."""

    lr: LearningRate = 2e-4  # Ho et al. 2020, CIFAR-10
    grad_clip: float = Field(default=1.0, gt=0.0, le=1e6)  # Ho et al. 2020
    channels: tuple[Width, ...] = Field(default=(32, 64), min_length=1, max_length=8)
    attention_levels: tuple[bool, ...] = (False, True)
    layers_per_block: int = Field(default=1, ge=1, le=8)
    norm_num_groups: Width = 8
    head_channels: Width = 16
    num_train_timesteps: int = Field(default=1000, ge=1, le=100_000)  # T
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    sampling_steps: int = Field(default=50, ge=1, le=100_000)  # the sampler's steps
    eta: float = Field(default=0.0, ge=0.0, le=10.0)  # DDIM η
    p_uncond: Fraction = 0.0  # classifier-free guidance label dropout; 0 = off
    guidance_scale: float = Field(default=1.0, ge=0.0, le=100.0)  # w; 1 = plain conditional sampling

    @model_validator(mode="after")
    def _denoiser_widths_fit(self) -> DenoiserConfig:
        if len(self.attention_levels) != len(self.channels):
            raise ValueError("attention_levels needs one entry per channels entry")
        if any(ch % self.norm_num_groups for ch in self.channels):
            raise ValueError(f"every channels entry must be divisible by norm_num_groups={self.norm_num_groups}")
        return self


class DiffusionConfig(DenoiserConfig):
    """Pixel-space diffusion; widen ``channels`` for real runs."""

    sampler: Literal["ddim", "dpm_solver++"] = "ddim"  # DDIM (Song et al. 2021) or DPM-Solver++(2M) (Lu et al. 2022)

    @model_validator(mode="after")
    def _sampler_fits(self) -> DiffusionConfig:
        if self.sampler != "ddim" and self.eta != 0:
            raise ValueError("eta is DDIM's; the dpm_solver++ sampler is deterministic (eta 0)")
        return self


class LatentDiffusionConfig(DenoiserConfig):
    """Two phases in one run: ``ae_steps`` steps of the KL autoencoder, then the latent denoiser
    (the fields of :class:`DenoiserConfig`; DDIM sampling).

    Small defaults for 32³-ish volumes on two CPU cores: a 4× down-sampling autoencoder (two
    down-samplings, 3 latent channels as in Pinaya et al. 2022) turns 32×48×32 into 3×8×12×8."""

    batch_size: int = Field(default=4, ge=1, le=65536)
    ae_steps: int = Field(default=500, ge=1, le=10_000_000)
    ae_channels: tuple[Width, ...] = Field(default=(16, 32, 32), min_length=1, max_length=6)
    ae_num_res_blocks: int = Field(default=1, ge=1, le=8)
    ae_norm_num_groups: Width = 8
    ae_attention: bool = False  # non-local attention at the bottleneck of encoder and decoder
    latent_channels: int = Field(default=3, ge=1, le=64)
    ae_lr: LearningRate = 5e-4
    kl_weight: float = Field(default=1e-6, ge=0.0, le=1.0)  # Pinaya et al. 2022
    # p(x|z) of the decoder: "laplace" = the L1 loss of Pinaya et al. for intensity images; "bernoulli" =
    # binary cross-entropy on logits, for binary volumes (shapes, masks; Kingma & Welling 2014, App. C.1),
    # where an L1-trained decoder settles on the empty volume (AdrenalMNIST3D: 2 % foreground)
    ae_likelihood: Literal["laplace", "bernoulli"] = "laplace"

    @model_validator(mode="after")
    def _ae_widths_fit(self) -> LatentDiffusionConfig:
        if any(ch % self.ae_norm_num_groups for ch in self.ae_channels):
            raise ValueError(f"every ae_channels entry must be divisible by ae_norm_num_groups={self.ae_norm_num_groups}")
        return self


CONFIGS: dict[str, type[GeneratorConfig]] = {
    "wgan-gp": WGANGPConfig,
    "stylegan2": StyleGAN2Config,
    "dyngan": DynGANConfig,
    "diffusion": DiffusionConfig,
    "latent-diffusion": LatentDiffusionConfig,
}


def parse_config(family: str, fields: dict[str, Any]) -> GeneratorConfig:
    """The family's config from request fields; 422 naming ``config.<field>`` for the first error."""
    cls = CONFIGS.get(family)
    if cls is None:
        raise InvalidInputError(f"unknown generator {family!r}; known: {', '.join(sorted(CONFIGS))}",
                                field="generator")
    try:
        return cls(**fields)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or '?'}: {e['msg']}" for e in errors)
        raise InvalidInputError(f"invalid {family} config ({reasons})",
                                field=f"config.{loc}" if loc else "config") from None


# -- memory -------------------------------------------------------------------------------------
BYTES = 4  # float32
STATE_COPIES = 5  # a parameter, its gradient, Adam's two moments and the EMA copy
# Activations kept for backward per unit of full-resolution width, per family, calibrated against
# the peak memory of real training steps at two batch sizes (``benchmarks/training_memory.py``,
# 2026-12-07; the per-sample slope is what a large batch is refused for): 6–8 for the GANs' plain
# conv stacks (a conv, a norm and an activation per level; GP/R1 add a second backward), about 50 for
# the diffusion U-Nets (residual blocks with two norms, the time embedding added at every block, and
# decoder blocks on concatenated skips), rounded up to 64.
KEPT_PER_WIDTH = {"wgan-gp": 8, "dyngan": 6, "stylegan2": 6, "diffusion": 64, "latent-diffusion": 6}
RUNTIME_BYTES = 512 * 2**20  # workspaces and allocator slack: up to 0.35 GiB more at batch 1 than at 4
MODULATED_COPIES = 4  # StyleGAN2's per-sample modulated weights: kept, gradient, and the D step's pass


def _widths(family: str, cfg: Any, side: int) -> tuple[int, int]:
    """(full-resolution width of G + D, widest layer) of the family's networks."""
    if family == "wgan-gp":
        return cfg.g_channels + cfg.d_channels, cfg.max_channels
    if family == "stylegan2":
        full = min(cfg.channel_max, max(1, cfg.channel_base // max(4, side)))
        return 2 * full, max(cfg.channel_max, cfg.z_dim, cfg.w_dim)
    if family == "dyngan":
        return 2 * cfg.width * (2 if cfg.residual else 1), max(8 * cfg.width, cfg.z_dim, cfg.feature_dim)
    if family == "diffusion":
        return cfg.channels[0] * (1 + cfg.layers_per_block), max(cfg.channels)
    if family == "latent-diffusion":  # the autoencoder's encoder + decoder at full resolution dominate
        full = 2 * cfg.ae_channels[0] * (1 + cfg.ae_num_res_blocks) + cfg.channels[0] * (1 + cfg.layers_per_block)
        return full, max(*cfg.ae_channels, *cfg.channels)
    raise InvalidInputError(f"unknown generator {family!r}", field="generator")


def estimate_training_bytes(family: str, cfg: GeneratorConfig, *, channels: int,
                            image_size: Sequence[int]) -> int:
    """A coarse upper estimate of a training step's memory, to refuse orders of magnitude early.

    activations = 4 B × batch × voxels × (channels + KEPT_PER_WIDTH[family] × width of the networks
    at full resolution), the deeper, smaller levels adding at most a third more (×4/3);
    parameters = 4 B × STATE_COPIES × 2 networks × 2 convolutions per level × levels × kernel (9, 27
    in 3D) × widest layer²;
    StyleGAN2 adds its modulated convolutions' per-sample weights, 4 B × MODULATED_COPIES × batch ×
    2 convolutions per level × levels × kernel × widest layer² (measured: 1.8 GiB for a 28-px step at
    batch 4, 3.7 GiB at batch 16).
    Attention is fused (no N² attention map is kept; ``generators.nets.denoiser_unet``). Plus
    RUNTIME_BYTES.
    """
    voxels = math.prod(int(s) for s in image_size)
    side = max(int(s) for s in image_size)
    full, widest = _widths(family, cfg, side)
    activations = BYTES * cfg.batch_size * voxels * (channels + KEPT_PER_WIDTH[family] * full) * 4 // 3
    levels = max(1, math.ceil(math.log2(max(side, 4))) - 1)  # 28 px: 28, 14, 7, 4
    kernel = 9 if len(image_size) == 2 else 27
    params = BYTES * STATE_COPIES * 2 * 2 * levels * kernel * widest * widest
    modulated = BYTES * MODULATED_COPIES * cfg.batch_size * 2 * levels * kernel * widest * widest \
        if family == "stylegan2" else 0
    return int(activations + params + modulated + RUNTIME_BYTES)
