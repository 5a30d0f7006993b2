"""The generator interface: train on a stored dataset, sample with a seed, checkpoint, resume.

A family subclasses :class:`Generator` and implements four things: building its networks
and optimisers (``build``), one training step (``train_step``), drawing images
(``generate``), and the list of stateful parts (``state_modules``). The shared loop in
:meth:`Generator.fit` owns batching, seeding, progress, EMA bookkeeping hooks and
checkpoints, so that every family gets bit-identical resume and seeded sampling the same way.

Randomness: every random draw inside a family uses ``self.rng`` (a ``torch.Generator`` on
the device) or the batch sampler's generator; both states are checkpointed, so training
N steps, saving and resuming for M more equals N + M steps straight.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from synthcohort.core.atomic import atomic_path
from synthcohort.core.errors import InvalidInputError
from synthcohort.core.progress import EtaClock, Progress, ProgressCallback
from synthcohort.core.seeding import derive_seed, torch_generator
from synthcohort.core.signals import signals_deferred
from synthcohort.core.version import __version__
from synthcohort.generators.configs import GeneratorConfig
from synthcohort.generators.registry import get_generator

CHECKPOINT_FORMAT = 1
RESIDENT_BYTES = 2 * 1024**3  # CUDA: training images up to this size are kept on the device


@dataclass(frozen=True)
class GeneratorSpec:
    """What the networks must produce; derived from the dataset, not chosen by the user."""

    spatial_dims: int  # 2 or 3
    in_channels: int  # image channels (1 grey, 3 RGB)
    image_size: tuple[int, ...]  # (H, W) or (D, H, W)
    num_classes: int
    mask_conditioned: bool = False  # a binary mask (1 channel) is an input of the generator


@dataclass
class TrainingData:
    """Real training images, already normalised to [0, 1], channel first."""

    images: np.ndarray  # (N, C, *spatial) float32
    labels: np.ndarray  # (N,) int64 class indices
    masks: np.ndarray | None = None  # (N, 1, *spatial) uint8 {0, 1}
    class_names: tuple[str, ...] = ()
    dataset_id: str = ""


@dataclass
class Batch:
    images: torch.Tensor  # (B, C, *spatial) in [-1, 1] on the device
    labels: torch.Tensor  # (B,) long
    masks: torch.Tensor | None  # (B, 1, *spatial) float {0, 1}




class Generator(ABC):
    """Base class of every generator family. See the module docstring."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig

    def __init__(self, spec: GeneratorSpec, config: GeneratorConfig | None = None,
                 device: torch.device | str = "cpu", seed: int = 0):
        self.spec = spec
        self.config = config if config is not None else self.Config()
        self.device = torch.device(device)
        self.seed = int(seed)
        self.step = 0
        self.saved_step = 0  # the step of the last checkpoint written or read: where a resume starts
        self.history: list[dict[str, float]] = []  # logged metrics, for curves and the API
        torch.manual_seed(derive_seed(seed, "init"))  # network initialisation
        self.rng = torch_generator(derive_seed(seed, "train"), self.device)
        self._sampler_rng = torch_generator(derive_seed(seed, "batches"))
        self.build()

    # -- what a family implements -------------------------------------------------------
    @abstractmethod
    def build(self) -> None:
        """Create networks, EMA copies and optimisers on ``self.device``."""

    @abstractmethod
    def train_step(self, next_batch: Callable[[], Batch]) -> dict[str, torch.Tensor]:
        """One generator update (and whatever critic updates precede it).

        Returns losses as tensors: the loop converts them to floats only every
        ``log_every`` steps, so there is no host-device sync in the inner loop.
        """

    @abstractmethod
    def generate(self, labels: torch.Tensor, masks: torch.Tensor | None,
                 rng: torch.Generator) -> torch.Tensor:
        """Images in [-1, 1] for the given labels (and masks), from the EMA weights."""

    @abstractmethod
    def state_modules(self) -> dict[str, Any]:
        """Everything with a ``state_dict``: networks, EMA networks, optimisers, scalers."""

    def extra_state(self) -> dict[str, Any]:
        """Family state that is not a module (e.g. ADA's p, DynGAN's partitions)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The discriminator's logits (B,) of images ``x`` in [-1, 1] on the device. Only a family
        trained with the logistic GAN loss implements it: its D's logit estimates log p_data/p_model."""
        raise InvalidInputError(f"{self.name} has no logistic discriminator to reject samples with",
                                field="rejection")

    # -- the shared training loop -----------------------------------------------------------
    def fit(self, data: TrainingData, steps: int, *, progress: ProgressCallback | None = None,
            checkpoint_path: str | Path | None = None,
            should_stop: Callable[[], bool] | None = None) -> None:
        """Train until ``self.step == steps`` (a resumed model continues from its step)."""
        next_batch = self._batch_source(data)
        clock = EtaClock(steps, self.step)
        while self.step < steps:
            losses = self.train_step(next_batch)
            self.step += 1
            if self.step % self.config.log_every == 0 or self.step == steps:
                metrics = {k: float(v) for k, v in losses.items()}
                metrics["images_per_s"] = clock.rate(self.step) * self.config.batch_size
                self.history.append({"step": self.step, **metrics})
                if progress:
                    progress(Progress("train", self.step, steps, metrics, clock.eta(self.step)))
            every = self.config.checkpoint_every
            if checkpoint_path and every and self.step % every == 0 and self.step < steps:
                self.save(checkpoint_path)
            if should_stop and should_stop():
                break
        if checkpoint_path:
            self.save(checkpoint_path)

    def _batch_source(self, data: TrainingData) -> Callable[[], Batch]:
        """Seeded sampling with replacement; classes balanced unless configured otherwise."""
        images = torch.from_numpy(np.ascontiguousarray(data.images, dtype=np.float32))
        labels = torch.from_numpy(np.asarray(data.labels, dtype=np.int64))
        masks = None if data.masks is None else torch.from_numpy(np.asarray(data.masks, dtype=np.float32))
        if self.config.class_weights == "balanced":
            counts = torch.bincount(labels, minlength=self.spec.num_classes).clamp(min=1).double()
            weights = (1.0 / counts)[labels]
        else:
            weights = torch.ones(len(labels), dtype=torch.double)
        pin = self.device.type == "cuda"
        # On CUDA a data set that fits (MedMNIST-sized) lives on the device: only the indices
        # cross, and the gather runs there. A larger one is gathered on the host into pinned
        # memory (indexing a pinned tensor returns pageable memory, so pin the batch itself).
        resident = pin and images.numel() * 4 <= RESIDENT_BYTES
        if resident:
            images, labels = images.to(self.device), labels.to(self.device)
            masks = None if masks is None else masks.to(self.device)
        fmt = self.memory_format

        def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            if resident:
                return t[idx.to(self.device, non_blocking=True)]
            t = t[idx]
            return t.pin_memory().to(self.device, non_blocking=True) if pin else t

        def next_batch() -> Batch:
            idx = torch.multinomial(weights, self.config.batch_size, replacement=True,
                                    generator=self._sampler_rng)
            x = (take(images, idx) * 2.0 - 1.0).contiguous(memory_format=fmt)
            m = None if masks is None else take(masks, idx).contiguous(memory_format=fmt)
            return Batch(x, take(labels, idx), m)

        return next_batch

    # -- device helpers ------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        """bf16 autocast on CUDA; disabled elsewhere, so CPU results stay exact float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    @property
    def memory_format(self) -> torch.memory_format:
        """Channels-last on CUDA (faster tensor-core convolutions), contiguous elsewhere."""
        if self.device.type != "cuda":
            return torch.contiguous_format
        return torch.channels_last if self.spec.spatial_dims == 2 else torch.channels_last_3d

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, class_index: int, *, seed: int, masks: np.ndarray | None = None,
               batch_size: int = 64) -> np.ndarray:
        """``n`` images of one class in [0, 1], (n, C, *spatial) float32; same seed → same bits."""
        if self.spec.mask_conditioned and masks is None:
            raise ValueError("this generator is mask-conditioned: pass masks")
        rng = torch_generator(derive_seed(seed, "sample"), self.device)
        out = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            labels = torch.full((b,), int(class_index), dtype=torch.long, device=self.device)
            m = None
            if masks is not None:
                m = torch.as_tensor(np.asarray(masks[start:start + b], dtype=np.float32), device=self.device)
            x = self.generate(labels, m, rng)
            out.append(((x.float().clamp(-1, 1) + 1) / 2).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    @torch.no_grad()
    def discriminator_logits(self, images: np.ndarray, class_index: int) -> np.ndarray:
        """D̃(x) = log D(x)/(1 − D(x)) of images in [0, 1] of one class, (N,) float: what
        :mod:`generators.rejection` accepts draws by (the family's :meth:`discriminate`)."""
        x = torch.as_tensor(np.asarray(images, dtype=np.float32), device=self.device) * 2.0 - 1.0
        labels = torch.full((len(x),), int(class_index), dtype=torch.long, device=self.device)
        return self.discriminate(x, labels).float().cpu().numpy()

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "generator": self.name,
            "code_version": __version__,
            "spec": asdict(self.spec),
            "config": self.config.model_dump(),
            "seed": self.seed,
            "step": self.step,
            "history": self.history,
            "modules": {k: m.state_dict() for k, m in self.state_modules().items()},
            "extra": self.extra_state(),
            "rng": {
                "device": self.rng.device.type,
                "train": self.rng.get_state(),
                "batches": self._sampler_rng.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    def save(self, path: str | Path) -> None:
        """Write the checkpoint atomically; a SIGTERM or SIGINT meanwhile waits until the file and
        ``saved_step`` agree, so an interrupted run's record names the step its file holds."""
        buf = io.BytesIO()
        torch.save(self.checkpoint(), buf)
        with signals_deferred():
            with atomic_path(path) as tmp:
                tmp.write_bytes(buf.getvalue())
            self.saved_step = self.step

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Generator:
        """Rebuild any registered family from a checkpoint (``Generator.load`` dispatches)."""

        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        family = get_generator(ckpt["generator"])
        spec = GeneratorSpec(**{**ckpt["spec"], "image_size": tuple(ckpt["spec"]["image_size"])})
        model = family(spec, family.Config(**ckpt["config"]), device=device, seed=ckpt["seed"])
        model.load_checkpoint(ckpt)
        return model

    def load_checkpoint(self, ckpt: dict[str, Any]) -> None:
        for k, m in self.state_modules().items():
            m.load_state_dict(ckpt["modules"][k])
        self.load_extra_state(ckpt.get("extra", {}))
        self.step = self.saved_step = int(ckpt["step"])
        self.history = list(ckpt.get("history", []))
        rng = ckpt["rng"]
        # A CPU and a CUDA generator have different state formats: a checkpoint trained on one
        # device type and loaded on another keeps its weights (sampling is seeded separately)
        # but cannot continue training bit for bit, so its training stream starts afresh.
        if rng.get("device", "cpu") == self.rng.device.type:
            self.rng.set_state(rng["train"])
        self._sampler_rng.set_state(rng["batches"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
