"""DynGAN-style conditional GAN: detect the real images the generator misses, and give them
their own partition.

Luo & Yang, "DynGAN: Solving Mode Collapse in GANs with Dynamic Clustering", IEEE TPAMI 2024.
The real images of each class are split into partitions P_1..P_K (sub-types of the class);
a conditional generator G(z, y) is trained on partition labels y, each partition sampled in
proportion to its size |P_k| (in training and at sample time), so that no sub-type of a
small minority class is dropped.

Collapse detection: for every monitored real image x_i the discriminator's logit
l_i = log D(x_i) / (1 - D(x_i)) is smoothed by an exponential moving average; x_i counts as
collapsed when the smoothed l_i > -log δ, i.e. D is confident that the generator almost
never produces anything near x_i. Every ``repartition_every`` steps, a class whose
collapsed fraction exceeds τ gets a new partition made of its collapsed images, and its
partitions are refined by k-means (seeded, initialised at the partition centroids) in the
discriminator's penultimate feature space phi. Incoming real batches are labelled with a
nearest-neighbour classifier on phi (the batch sampler does not say which stored image it
drew).

Design choice: partitions are nested within the dataset class (partition index
y = class · max_partitions + k), rather than training one model per class. One model
serves every class, the class weighting of the shared training loop still holds, and a
partition can never mix classes.

Augmentation: the ADA pipeline of :mod:`generators.augment` is applied to everything D
sees, so that on a small class D does not memorise every real image (which would make every
image look collapsed).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.progress import ProgressCallback
from synthcohort.core.seeding import derive_seed, numpy_rng
from synthcohort.generators.augment import AdaptiveP, AugmentPipe
from synthcohort.generators.base import Batch, Generator, TrainingData
from synthcohort.generators.configs import DynGANConfig
from synthcohort.generators.ema import EMA
from synthcohort.generators.losses import discriminator_step, generator_loss
from synthcohort.generators.nets.dyngan_discriminator import DynGANDiscriminator
from synthcohort.generators.nets.dyngan_generator import DynGANGenerator
from synthcohort.generators.registry import register
from synthcohort.generators.stylegan2 import Canvas


@register("dyngan")
class DynGAN(Generator):
    Config = DynGANConfig
    config: DynGANConfig

    def build(self) -> None:
        spec, cfg = self.spec, self.config
        if spec.spatial_dims != 2:
            raise InvalidInputError("dyngan handles 2D images only; use diffusion or wgan_gp for 3D",
                                    field="generator")
        if spec.mask_conditioned:
            raise InvalidInputError("dyngan is not mask-conditioned", field="generator")
        if cfg.max_partitions < 1:
            raise InvalidInputError("must be at least 1", field="max_partitions")
        self.canvas = Canvas.for_size(spec.image_size, min_side=8)
        self.num_classes = max(1, spec.num_classes)
        num_labels = self.num_classes * cfg.max_partitions
        res = self.canvas.side
        self.G = DynGANGenerator(z_dim=cfg.z_dim, num_labels=num_labels, resolution=res,
                                 img_channels=spec.in_channels, width=cfg.width,
                                 embed_dim=cfg.embed_dim, residual=cfg.residual).to(self.device)
        self.D = DynGANDiscriminator(num_labels=num_labels, resolution=res, img_channels=spec.in_channels,
                                     width=cfg.width, feature_dim=cfg.feature_dim,
                                     residual=cfg.residual).to(self.device)
        self.G_ema = EMA(self.G, cfg.ema_decay).to(self.device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        ratio = cfg.r1_interval / (cfg.r1_interval + 1)  # lazy R1 (StyleGAN2 Appendix B)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d * ratio,
                                      betas=(cfg.betas[0] ** ratio, cfg.betas[1] ** ratio))
        self.augment_pipe = AugmentPipe()
        self.ada = AdaptiveP(target=cfg.ada_target, interval=cfg.ada_interval, kimg=cfg.ada_kimg,
                             batch_size=cfg.batch_size, p_init=cfg.ada_p_init, device=self.device)
        # Partition state. Before any data is attached every class has one partition.
        self.fingerprint = ""
        self.monitor_idx = np.zeros(0, dtype=np.int64)  # indices into the training images
        self.bank_x = torch.zeros(0, device=self.device)
        self.bank_cls = torch.zeros(0, dtype=torch.long, device=self.device)
        self.part = torch.zeros(0, dtype=torch.long, device=self.device)  # global partition per image
        self.logit_ema = torch.zeros(0, device=self.device)
        self.bank_feat = torch.zeros(0, device=self.device)
        self.collapsed_frac = torch.zeros((), device=self.device)
        self.repartitions: list[dict[str, Any]] = []  # when, which class, sizes: the audit trail
        self._r1 = torch.zeros((), device=self.device)

    # -- partitions ----------------------------------------------------------------------------
    def partition_sizes(self) -> np.ndarray:
        """(num_classes, max_partitions) counts of monitored images; one per class if no data."""
        K = self.config.max_partitions
        if self.part.numel() == 0:
            sizes = np.zeros((self.num_classes, K), dtype=np.int64)
            sizes[:, 0] = 1
            return sizes
        counts = torch.bincount(self.part, minlength=self.num_classes * K).cpu().numpy()
        sizes = counts.reshape(self.num_classes, K)
        sizes[sizes.sum(1) == 0, 0] = 1  # a class without images: one nominal partition
        return sizes

    def partition_labels(self) -> np.ndarray:
        """Partition (within its class) of each monitored image, in ``monitor_idx`` order."""
        return (self.part % self.config.max_partitions).cpu().numpy()

    def _partition_probs(self) -> torch.Tensor:
        sizes = torch.as_tensor(self.partition_sizes(), dtype=torch.float32, device=self.device)
        return sizes / sizes.sum(dim=1, keepdim=True)

    def _draw_partitions(self, cls: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Global partition labels for classes ``cls``, each partition ∝ its size."""
        probs = self._probs[cls]
        k = torch.multinomial(probs, 1, generator=rng).squeeze(1)
        return cls * self.config.max_partitions + k

    def _attach(self, data: TrainingData) -> None:
        """Set the monitored images; a checkpoint of the same data keeps its partitions."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(data.images, dtype=np.float32).tobytes())
        h.update(np.asarray(data.labels, dtype=np.int64).tobytes())
        fp = h.hexdigest()
        if fp != self.fingerprint:
            labels = np.asarray(data.labels, dtype=np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise InvalidInputError(f"class indices must lie in [0, {self.num_classes})", field="labels")
            rng = numpy_rng(derive_seed(self.seed, "dyngan-monitor"))
            idx = []
            for c in range(self.num_classes):
                members = np.flatnonzero(labels == c)
                if len(members) > self.config.monitor_max:
                    members = np.sort(rng.choice(members, self.config.monitor_max, replace=False))
                idx.append(members)
            self.fingerprint = fp
            self.monitor_idx = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
            cls = torch.as_tensor(labels[self.monitor_idx], device=self.device)
            self.part = cls * self.config.max_partitions
            self.logit_ema = torch.zeros(len(self.monitor_idx), device=self.device)
            self.bank_feat = torch.zeros(len(self.monitor_idx), self.config.feature_dim, device=self.device)
            self.collapsed_frac = torch.zeros((), device=self.device)
        x = torch.as_tensor(np.asarray(data.images[self.monitor_idx], dtype=np.float32), device=self.device)
        self.bank_x = self.canvas.pad(x * 2 - 1)
        self.bank_cls = torch.as_tensor(np.asarray(data.labels, dtype=np.int64)[self.monitor_idx],
                                        device=self.device)
        self._probs = self._partition_probs()

    def fit(self, data: TrainingData, steps: int, *, progress: ProgressCallback | None = None,
            checkpoint_path: str | Path | None = None,
            should_stop: Callable[[], bool] | None = None) -> None:
        """The shared loop, after attaching ``data`` as the monitored images."""
        self._attach(data)
        super().fit(data, steps, progress=progress, checkpoint_path=checkpoint_path, should_stop=should_stop)

    @torch.no_grad()
    def _monitor(self) -> None:
        """One D pass over the monitored images: smooth their logits, refresh their features."""
        logits, feats = [], []
        for s in range(0, len(self.bank_x), 256):
            x = self.bank_x[s:s + 256]
            phi = self.D.features(x)
            y = self.part[s:s + 256]
            logits.append(self.D.psi(phi).squeeze(1) + (self.D.embed(y) * phi).sum(1))
            feats.append(phi)
        a = self.config.monitor_decay
        self.logit_ema = a * self.logit_ema + (1 - a) * torch.cat(logits)
        self.bank_feat = torch.cat(feats)
        collapsed = self.logit_ema > -math.log(self.config.delta)
        self.collapsed_frac = collapsed.float().mean()

    @torch.no_grad()
    def _label_reals(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Nearest neighbour (in phi, within the same class) among the monitored images."""
        phi = self.D.features(x)
        d = torch.cdist(phi, self.bank_feat)
        d = d.masked_fill(cls[:, None] != self.bank_cls[None, :], float("inf"))
        return self.part[d.argmin(dim=1)]

    def _repartition(self) -> None:
        """New partitions from the collapsed images, then k-means refinement, per class."""
        cfg = self.config
        K = cfg.max_partitions
        collapsed = (self.logit_ema > -math.log(cfg.delta)).cpu().numpy()
        part = self.part.cpu().numpy().copy()
        feats = self.bank_feat.double().cpu().numpy()
        cls_all = self.bank_cls.cpu().numpy()
        changed = False
        for c in range(self.num_classes):
            members = np.flatnonzero(cls_all == c)
            if len(members) == 0:
                continue
            frac = float(collapsed[members].mean())
            used = sorted(set((part[members] % K).tolist()))
            if frac <= cfg.tau or len(used) >= K or len(members) < len(used) + 1:
                continue
            new_k = len(used)
            local = {k: i for i, k in enumerate(used)}
            lab = np.array([local[k] for k in part[members] % K])
            lab[collapsed[members]] = new_k
            lab = _kmeans_refine(feats[members], lab, new_k + 1,
                                 seed=derive_seed(self.seed, "kmeans", self.step, c))
            part[members] = c * K + lab
            self.repartitions.append({"step": self.step, "class": c, "collapsed": frac,
                                      "sizes": np.bincount(lab).tolist()})
            changed = True
        if changed:
            self.part = torch.as_tensor(part, device=self.device)
            self.logit_ema = torch.zeros_like(self.logit_ema)  # measure collapse afresh
            self._probs = self._partition_probs()

    # -- training ------------------------------------------------------------------------------
    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment_pipe(x, self.ada.p, self.rng) if self.config.augment else x

    def train_step(self, next_batch: Callable[[], Batch]) -> dict[str, torch.Tensor]:
        cfg = self.config
        if not hasattr(self, "_probs") or self.bank_x.numel() == 0:
            raise RuntimeError("dyngan trains through fit(), which attaches the monitored images")
        if self.step % cfg.monitor_every == 0:
            self._monitor()
        batch = next_batch()
        real, cls = self.canvas.pad(batch.images), batch.labels
        y_real = self._label_reals(real, cls)
        y_fake = self._draw_partitions(cls, self.rng)

        # Discriminator: non-saturating loss on partition-conditioned logits, lazy R1.
        do_r1 = cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0
        with torch.no_grad():
            fake = self.G(self._z(len(cls)), y_fake)
        loss_d, d_real, r1 = discriminator_step(self.D, self.opt_d, real, y_real, fake, y_fake, self._aug,
                                                gamma=cfg.r1_gamma, interval=cfg.r1_interval, do_r1=do_r1)
        if r1 is not None:
            self._r1 = r1
        if cfg.augment:
            self.ada.observe(d_real)
            self.ada.update()

        # Generator: partitions drawn in proportion to their sizes.
        self.D.requires_grad_(False)
        y_fake = self._draw_partitions(cls, self.rng)
        fake = self.G(self._z(len(cls)), y_fake)
        loss_g = generator_loss(self.D(self._aug(fake), y_fake))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.G_ema.update(self.G, self.step)

        if (self.step + 1) % cfg.repartition_every == 0:
            self._repartition()
        num_parts = (self._probs > 0).sum().float()
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "r1": self._r1.detach(),
                "p": self.ada.p.clone(), "partitions": num_parts, "collapsed": self.collapsed_frac.clone()}

    def _z(self, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, generator=rng or self.rng, device=self.device)

    # -- sampling and state ------------------------------------------------------------------
    def generate(self, labels: torch.Tensor, masks: torch.Tensor | None, rng: torch.Generator) -> torch.Tensor:
        if not hasattr(self, "_probs"):
            self._probs = self._partition_probs()
        y = self._draw_partitions(labels, rng)
        return self.canvas.crop(self.G_ema(self._z(len(labels), rng), y))

    @torch.no_grad()
    def discriminate(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """D's logit under the partition a real image there would get (nearest monitored image
        in phi, :meth:`_label_reals`); for a class without monitored images, its first partition."""
        x = self.canvas.pad(x)
        known = torch.isin(labels, self.bank_cls).all().item() if self.bank_feat.numel() else False
        out = []
        for s in range(0, len(x), 256):
            xb, cb = x[s:s + 256], labels[s:s + 256]
            y = self._label_reals(xb, cb) if known else cb * self.config.max_partitions
            out.append(self.D(xb, y))
        return torch.cat(out)

    def state_modules(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema, "opt_g": self.opt_g, "opt_d": self.opt_d}

    def extra_state(self) -> dict[str, Any]:
        return {"ada": self.ada.state_dict(), "fingerprint": self.fingerprint,
                "monitor_idx": torch.as_tensor(self.monitor_idx), "part": self.part.cpu(),
                "bank_cls": self.bank_cls.cpu(),
                "logit_ema": self.logit_ema.cpu(), "bank_feat": self.bank_feat.cpu(),
                "collapsed_frac": self.collapsed_frac.cpu(), "repartitions": list(self.repartitions),
                "r1": self._r1.cpu()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.ada.load_state_dict(state["ada"])
        self.fingerprint = state["fingerprint"]
        self.monitor_idx = state["monitor_idx"].numpy().astype(np.int64)
        self.part = state["part"].to(self.device)
        self.bank_cls = state["bank_cls"].to(self.device)
        self.logit_ema = state["logit_ema"].to(self.device)
        self.bank_feat = state["bank_feat"].to(self.device)
        self.collapsed_frac = state["collapsed_frac"].to(self.device)
        self.repartitions = list(state["repartitions"])
        self._r1 = state["r1"].to(self.device)
        self._probs = self._partition_probs()


def _kmeans_refine(features: np.ndarray, labels: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """Lloyd's k-means into ``k`` clusters, started at the centroids of ``labels``.

    sklearn's KMeans, one run, in the same (unscaled) feature space as the nearest-neighbour
    labelling of real batches. If a partition was emptied (every image of the class
    collapsed), there is no centroid to start from and the start is seeded k-means++.
    Empty clusters are dropped and labels made compact, keeping the partitions' order.
    """

    if len(np.unique(labels)) == k:
        init: np.ndarray | str = np.stack([features[labels == j].mean(0) for j in range(k)])
    else:
        init = "k-means++"
    km = KMeans(n_clusters=k, init=init, n_init=1, random_state=seed % (2**32)).fit(features)
    _, compact = np.unique(km.labels_, return_inverse=True)
    return compact.astype(np.int64)
