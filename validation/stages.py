"""The validation stage's steps, each a function from typed inputs to typed findings.

``validation.pipeline.validate_arrays`` runs them in order: features → similarity → Dice (mask-
conditioned data) → mode collapse → copy screening → flags → utility. Each step adds metrics,
details and warnings to the report through a ``Findings``; no step reads another's internals
beyond the ``Features`` and ``CopyScreen`` it is handed. Every stochastic step derives its own
seed from ``config.seed`` and its name, so the steps are independent of their order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.seeding import derive_seed, numpy_rng
from synthcohort.validation.collapse import bins_test, prdc
from synthcohort.validation.config import MIN_SAMPLES, ValidationConfig
from synthcohort.validation.copies import CopyScreen, screen_copies
from synthcohort.validation.dice import dice_gate
from synthcohort.validation.encoder import FeatureExtractor, domain_encoder
from synthcohort.validation.explanations import saturated_utility
from synthcohort.validation.flags import broken_flags, copy_flags, merge_flags, outlier_flags
from synthcohort.validation.frechet import Whitening, fd, relative_similarity
from synthcohort.validation.inception import PREPROCESSING as INCEPTION_PREPROCESSING
from synthcohort.validation.inception import inception_features_available
from synthcohort.validation.kid import kid
from synthcohort.validation.reference import (
    REFERENCE_FRACTION,
    indices_fingerprint,
    reference_indices,
    reference_seed,
)
from synthcohort.validation.utility import SYNTHETIC_ARMS, utility_experiment
from synthcohort.validation.verdict import Metric, gate, info


class SplitLike(Protocol):
    images: np.ndarray
    labels: np.ndarray


@dataclass
class RealSplit:
    """A split given as arrays (the store's ``SplitArrays`` has the same fields)."""

    images: np.ndarray  # (N, C, *spatial) float32 in [0, 1]
    labels: np.ndarray  # (N,) int
    masks: np.ndarray | None = None
    sample_ids: Sequence[str] | None = None


@dataclass
class Findings:
    """What one step adds to the report."""

    metrics: dict[str, Metric] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extractors: list[dict[str, str]] = field(default_factory=list)

    def update(self, other: Findings) -> None:
        self.metrics.update(other.metrics)
        self.details.update(other.details)
        self.warnings += other.warnings
        self.extractors += other.extractors


@dataclass(frozen=True)
class Inputs:
    """The arrays every step reads, checked and converted once."""

    cfg: ValidationConfig
    syn: np.ndarray  # synthetic images, float32
    tr_x: np.ndarray
    tr_y: np.ndarray
    te_x: np.ndarray
    te_y: np.ndarray
    real_train: SplitLike
    real_val: SplitLike
    real_test: SplitLike
    synthetic_masks: np.ndarray | None
    class_index: int
    class_names: Sequence[str] | None

    @classmethod
    def of(cls, real_train: SplitLike, real_val: SplitLike, real_test: SplitLike, synthetic: np.ndarray, *,
           class_index: int, class_names: Sequence[str] | None, synthetic_masks: np.ndarray | None,
           config: ValidationConfig) -> Inputs:
        inp = cls(config, np.asarray(synthetic, dtype=np.float32),
                  np.asarray(real_train.images, np.float32), _labels(real_train),
                  np.asarray(real_test.images, np.float32), _labels(real_test),
                  real_train, real_val, real_test, synthetic_masks, class_index, class_names)
        inp._check()
        return inp

    @property
    def spatial_dims(self) -> int:
        return self.tr_x.ndim - 2

    @property
    def masks_used(self) -> bool:
        """Mask-conditioned: synthetic masks given and the dataset has real ones."""
        return (self.synthetic_masks is not None and getattr(self.real_train, "masks", None) is not None
                and getattr(self.real_test, "masks", None) is not None)

    @property
    def in_class_train(self) -> np.ndarray:
        return self.tr_y == self.class_index

    @property
    def in_class_test(self) -> np.ndarray:
        return self.te_y == self.class_index

    @property
    def class_name(self) -> str:
        return self.class_names[self.class_index] if self.class_names else str(self.class_index)

    def _check(self) -> None:
        syn, tr_x, masks = self.syn, self.tr_x, self.synthetic_masks
        if syn.ndim not in (4, 5):
            raise InvalidInputError(f"synthetic images must be (N, C, H, W) or (N, C, D, H, W), got shape {syn.shape}",
                                    field="samples")
        if syn.shape[1:] != tr_x.shape[1:]:
            raise InvalidInputError(f"synthetic images have shape {syn.shape[1:]}, the dataset {tr_x.shape[1:]}",
                                    field="samples")
        if masks is not None and (len(masks) != len(syn) or masks.shape[2:] != syn.shape[2:]):
            raise InvalidInputError(f"masks of shape {masks.shape} do not match images {syn.shape}", field="samples")
        if len(syn) < MIN_SAMPLES:
            raise InvalidInputError(f"{len(syn)} synthetic samples; at least {MIN_SAMPLES} are needed", field="samples")
        n_tr, n_te = int(self.in_class_train.sum()), int(self.in_class_test.sum())
        if n_tr < MIN_SAMPLES or n_te < MIN_SAMPLES:
            raise InvalidInputError(
                f"class {self.class_index} has {n_tr} training and {n_te} hold-out images; "
                f"at least {MIN_SAMPLES} of each are needed", field="class_name")


def _labels(split: SplitLike) -> np.ndarray:
    return np.asarray(split.labels).reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class Features:
    """Domain-encoder features of every compared set, and the real reference sample."""

    encoder: FeatureExtractor
    train_all: np.ndarray  # every train image
    test_all: np.ndarray  # every hold-out image
    synthetic: np.ndarray
    train: np.ndarray  # train images of the class
    holdout: np.ndarray  # hold-out images of the class
    reference: np.ndarray  # the reference sample (train images of the class the encoder did not see)
    reference_indices: np.ndarray


# 1. features ------------------------------------------------------------------------------------
def extract_features(inp: Inputs, *, encoder: FeatureExtractor | None, dataset_key: str | None
                     ) -> tuple[Features, Findings]:
    """Train (or take) the domain encoder without the reference sample, and embed every set."""
    cfg, seed, out = inp.cfg, inp.cfg.seed, Findings()
    ref_seed = reference_seed(seed)
    ref_idx = reference_indices(inp.tr_y, inp.class_index, seed=ref_seed, min_size=MIN_SAMPLES)
    ref_key = indices_fingerprint(ref_idx)
    enc = encoder or domain_encoder(
        inp.tr_x, inp.tr_y, dataset_key=dataset_key, seed=derive_seed(seed, "encoder") % 2**31,
        feature_dim=cfg.feature_dim, epochs=cfg.encoder_epochs, batch_size=cfg.encoder_batch_size, exclude=ref_idx,
    )
    if enc.excluded != ref_key:
        out.warnings.append("the given encoder was not trained without this validation's reference sample; "
                            "real-vs-real references (S_FID, KID, PRDC, bins) are then biased in favour of "
                            "synthetic data")
    out.extractors.append(enc.describe())
    f_train_all, f_test_all, f_syn = enc(inp.tr_x), enc(inp.te_x), enc(inp.syn)
    feats = Features(enc, f_train_all, f_test_all, f_syn, f_train_all[inp.in_class_train],
                     f_test_all[inp.in_class_test], f_train_all[ref_idx], ref_idx)
    out.details["reference"] = {
        "n": len(ref_idx), "n_class_train": int(inp.in_class_train.sum()), "fraction": REFERENCE_FRACTION,
        "min_size": MIN_SAMPLES, "seed": int(ref_seed), "fingerprint": ref_key,
        "encoder_trained_without_it": enc.excluded == ref_key,
        "used_for": ["s_fid", "kid_reference", "s_fid_inception", "prdc real vs real", "bins real occupancy", "tsne"],
    }
    return feats, out


# 2. similarity gate (relative FD), KID, Inception FID ----------------------------------------------
def similarity(inp: Inputs, f: Features) -> Findings:
    """S_FID in whitened features (the gate in 2D, and in 3D without masks), KID, Inception FID."""
    cfg, seed, out = inp.cfg, inp.cfg.seed, Findings()
    # FD in features whitened by the encoder's own training images (none of them is compared)
    white = Whitening.fit(np.delete(f.train_all, f.reference_indices, axis=0))
    sim = relative_similarity(white(f.reference), white(f.synthetic), white(f.holdout),
                              seed=derive_seed(seed, "s_fid"), bootstrap=cfg.bootstrap)
    out.details["whitening"] = {"fitted_on": "encoder training images (train split without the reference)",
                                "n": int(len(inp.tr_x) - len(f.reference_indices)), "dim": white.dim}
    out.warnings += sim.warnings
    label = (f"FD(real reference, hold-out) / FD(synthetic, hold-out), N = {sim.n}, hold-out {sim.n_holdout}, "
             f"{f.encoder.name.split('(')[0]}, whitened")
    m = out.metrics
    m["s_fid"] = (gate(sim.s_fid, cfg.similarity_threshold, ci=sim.ci, label=label, n=sim.n)
                  if inp.spatial_dims == 2 or not inp.masks_used
                  else info(sim.s_fid, ci=sim.ci,
                            label=label + " (informational: the Dice gate decides for mask-conditioned 3D)"))
    m["fd_synthetic"] = info(sim.fd_synthetic, label="FD(synthetic, hold-out), domain encoder, whitened")
    m["fd_reference"] = info(sim.fd_reference, label="FD(real reference sample, unseen by the encoder, hold-out), "
                                                     "domain encoder, whitened")
    kid_seed = derive_seed(seed, "kid")
    k_syn = kid(f.synthetic, f.holdout, seed=kid_seed, subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size)
    k_ref = kid(f.reference, f.holdout, seed=kid_seed, subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size)
    m["kid_synthetic"] = info(k_syn.value, ci=k_syn.ci, label=f"KID(synthetic, hold-out), subsets of {k_syn.subset_size}")
    m["kid_reference"] = info(k_ref.value, ci=k_ref.ci,
                              label=f"KID(real reference, hold-out), subsets of {k_ref.subset_size}")
    out.update(inception_fid(inp, f))
    return out


def inception_fid(inp: Inputs, f: Features) -> Findings:
    """Standard FID (Inception-v3) beside S_FID, on the same reference images (informational)."""
    out = Findings()
    if not inp.cfg.use_inception:
        out.warnings.append("Inception features disabled by config (use_inception = false); standard FID not computed")
        return out
    inc, why = inception_features_available(inp.spatial_dims)
    if inc is None:
        out.warnings.append(why)
        return out
    out.extractors.append(inc.describe())
    rng = numpy_rng(derive_seed(inp.cfg.seed, "inception"))
    tr_cls = inp.tr_x[f.reference_indices]  # the same reference images as S_FID
    n = min(len(inp.syn), len(tr_cls))
    g_hold = inc(inp.te_x[inp.in_class_test])
    g_syn = inc(inp.syn[rng.choice(len(inp.syn), n, replace=False)])
    g_ref = inc(tr_cls[rng.choice(len(tr_cls), n, replace=False)])
    fid_syn, fid_ref = fd(g_syn, g_hold), fd(g_ref, g_hold)
    out.metrics["fid_inception"] = info(fid_syn, label=f"standard FID (Inception-v3) synthetic vs hold-out, N = {n}")
    out.metrics["fid_inception_reference"] = info(fid_ref, label="standard FID (Inception-v3) real reference vs hold-out")
    out.metrics["s_fid_inception"] = info(fid_ref / max(fid_syn, 1e-12),
                                          label="relative FID with Inception features: FD(reference) / FD(synthetic)")
    out.details["inception"] = {"n": int(n), "n_holdout": int(len(g_hold)), "preprocessing": INCEPTION_PREPROCESSING,
                                "input_size": list(inp.syn.shape[2:]), "weights": inc.describe()}
    return out


# 3. Dice gate (mask-conditioned data) ---------------------------------------------------------------
def dice(inp: Inputs, *, dataset_key: str | None = None) -> Findings:
    """The train-on-synthetic DSC ratio (``validation.dice``, equation 1) and the mask fidelity."""
    cfg, out = inp.cfg, Findings()
    tr_m, te_m = np.asarray(inp.real_train.masks), np.asarray(inp.real_test.masks)  # type: ignore[attr-defined]
    held = inp.in_class_test
    res = dice_gate(inp.tr_x, tr_m, inp.te_x[held], te_m[held], inp.syn, np.asarray(inp.synthetic_masks),
                    seed=derive_seed(cfg.seed, "dice") % 2**31, epochs=cfg.segmenter_epochs,
                    batch_size=cfg.segmenter_batch_size, bootstrap=cfg.bootstrap, dataset_key=dataset_key)
    out.metrics["dice_ratio"] = gate(res.ratio, cfg.dice_ratio_threshold, ci=res.ci, n=int(held.sum()),
                                     label="DSC_syn / DSC_real: a MONAI UNet trained on the synthetic pairs "
                                           "against one trained on the real train pairs, both on the real hold-out")
    out.metrics["dsc_synthetic"] = info(res.dsc_synthetic, label="mean Dice on the real hold-out of the segmenter "
                                                                 "trained on the synthetic pairs")
    out.metrics["dsc_real"] = info(res.dsc_real, label="mean Dice on the real hold-out of the segmenter trained on "
                                                       "the real train pairs")
    out.metrics["mask_fidelity"] = info(res.fidelity_ratio, label="the real-trained segmenter's mean Dice on the "
                                                                  "synthetic images against their masks, over DSC_real")
    out.details["dice"] = {"holdout_dice_real": res.holdout_real.round(4).tolist(),
                           "holdout_dice_synthetic_trained": res.holdout_synthetic.round(4).tolist(),
                           "sample_mask_fidelity": res.fidelity.round(4).tolist(),
                           "segmenter_epochs": {"real": cfg.segmenter_epochs, "synthetic": res.synthetic_epochs}}
    out.extractors += res.segmenters
    return out


# 4. mode collapse -----------------------------------------------------------------------------------
def mode_collapse(inp: Inputs, f: Features) -> Findings:
    """PRDC coverage against real-vs-real, and bin-occupancy entropy (the collapse gates)."""
    cfg, out, m = inp.cfg, Findings(), {}
    rng = numpy_rng(derive_seed(cfg.seed, "prdc"))
    n = min(len(f.synthetic), len(f.reference))
    chunk = cfg.nn_chunk_bytes
    p_syn = prdc(f.holdout, f.synthetic[rng.choice(len(f.synthetic), n, replace=False)], pr_k=cfg.pr_k,
                 dc_k=cfg.dc_k, chunk_bytes=chunk)
    p_real = prdc(f.holdout, f.reference[rng.choice(len(f.reference), n, replace=False)], pr_k=cfg.pr_k,
                  dc_k=cfg.dc_k, chunk_bytes=chunk)
    for name in ("precision", "recall", "density", "coverage"):
        m[name] = info(getattr(p_syn, name), label=f"{name} of synthetic vs hold-out (N = {n})")
        m[f"{name}_real"] = info(getattr(p_real, name), label=f"{name} of the real reference vs hold-out (N = {n})")
    m["coverage_ratio"] = gate(p_syn.coverage / max(p_real.coverage, 1e-12), cfg.coverage_ratio_threshold,
                               label="coverage(synthetic) / coverage(real vs real)")
    bins = bins_test(f.reference, f.synthetic, seed=derive_seed(cfg.seed, "bins") % 2**31, max_bins=cfg.max_bins,
                     alpha=cfg.bins_alpha, cells_from=f.train)
    m["entropy_ratio"] = gate(bins.entropy_ratio, cfg.entropy_ratio_threshold,
                              label=f"H/log K of synthetic / of real bin occupancy (K = {bins.k})")
    m["bins_different"] = info(bins.different_bins, label=f"bins with different occupancy ({bins.correction})")
    out.metrics = m
    out.details["bins"] = {"k": bins.k, "real_counts": bins.real_counts, "synthetic_counts": bins.synthetic_counts,
                           "entropy_real": bins.entropy_real, "entropy_synthetic": bins.entropy_synthetic,
                           "alpha": bins.alpha, "correction": bins.correction}
    return out


# 5. copies of training patients --------------------------------------------------------------------
def copy_screening(inp: Inputs, f: Features) -> tuple[CopyScreen, Findings]:
    """Nearest training image of every sample, in features and in pixels, against hold-out calibration."""
    screen = screen_copies(f.synthetic, f.train_all, f.test_all, np.nan_to_num(inp.syn), inp.tr_x, inp.te_x,
                           quantile=inp.cfg.copy_quantile, max_shift=copy_shift(inp),
                           flips=inp.cfg.copy_flips, chunk_bytes=inp.cfg.nn_chunk_bytes)
    out = Findings()
    out.metrics["authenticity"] = info(screen.authenticity, label="fraction authentic (Alaa et al. 2022)")
    return screen, out


def copy_shift(inp: Inputs) -> int:
    """The configured alignment tolerance, at most a quarter of the smallest image side."""
    return min(inp.cfg.copy_max_shift, min(inp.syn.shape[2:]) // 4)


# 6. per-sample flags ----------------------------------------------------------------------------------
def sample_flags(inp: Inputs, f: Features, screen: CopyScreen, *, sample_files: Sequence[str] | None,
                 manifest_rows: Sequence[dict[str, str]] | None) -> tuple[list[dict[str, Any]], Findings]:
    """One record per sample: its flags (near copy, outlier, broken) and its nearest training image."""
    cfg, out = inp.cfg, Findings()
    o_flags, radius = outlier_flags(f.synthetic, f.train, k=cfg.outlier_k, quantile=cfg.outlier_quantile,
                                    chunk_bytes=cfg.nn_chunk_bytes)
    flags = merge_flags(copy_flags(screen), o_flags, broken_flags(inp.syn, inp.tr_x, cfg.saturated_fraction))
    out.details["thresholds"] = {"near_copy_feature_distance": screen.feature_threshold,
                                 "near_copy_pixel_correlation": screen.correlation_threshold, "outlier_radius": radius,
                                 "near_copy_alignment": {"max_shift": copy_shift(inp), "flips": inp.cfg.copy_flips}}
    train_ids = list(getattr(inp.real_train, "sample_ids", None) or [f"train-{i}" for i in range(len(inp.tr_x))])
    files = list(sample_files or [f"{i:06d}" for i in range(len(inp.syn))])

    def index(j: int) -> int:
        given = manifest_rows[j].get("index", "") if manifest_rows else ""
        return int(given) if given.isdigit() else j

    samples = [
        {
            "index": index(j),
            "file": files[j],
            "flags": [fl.to_json() for fl in flags[j]],
            "nearest_train": {
                "sample_id": str(train_ids[screen.nearest_index[j]]),
                "feature_distance": float(screen.feature_distance[j]),
                "pixel_correlation": float(screen.pixel_correlation[j]),
                "pixel_sample_id": str(train_ids[screen.pixel_index[j]]),
            },
        }
        for j in range(len(inp.syn))
    ]
    for kind in ("near_copy", "outlier", "broken"):
        out.metrics[f"flagged_{kind}"] = info(sum(any(fl.kind == kind for fl in fls) for fls in flags),
                                              label=f"samples flagged {kind}")
    return samples, out


# 7. utility ------------------------------------------------------------------------------------------
def utility(inp: Inputs, on_epoch: Callable[[int, int], None] | None = None) -> Findings:
    """Minority recall of a classifier trained with the cohort against the classical remedies;
    ``on_epoch(done, total)`` after every classifier epoch (the step's progress)."""
    cfg, out = inp.cfg, Findings()
    va_x, va_y = np.asarray(inp.real_val.images, np.float32), _labels(inp.real_val)
    tr_y, te_y = inp.tr_y, inp.te_y
    num_classes = len(inp.class_names) if inp.class_names else int(max(tr_y.max(), te_y.max(), va_y.max()) + 1)
    if len(np.unique(tr_y)) < 2:
        out.warnings.append("utility not computed: the training split has a single class")
        return out
    arms = utility_experiment(
        (inp.tr_x, tr_y), (va_x, va_y), (inp.te_x, te_y), inp.syn, minority=inp.class_index, num_classes=num_classes,
        seed=derive_seed(cfg.seed, "utility"), epochs=cfg.utility_epochs, seeds=cfg.utility_seeds,
        batch_size=cfg.utility_batch_size, bootstrap=cfg.bootstrap, classifier=cfg.utility_classifier,
        on_epoch=on_epoch,
    )
    out.details["utility"] = {a.name: {"values": a.values, "ci": a.ci, "n_added": a.n_added, "per_seed": a.per_seed}
                              for a in arms.values()}
    out.details["utility_classifier"] = cfg.utility_classifier
    out.details["utility_saturated"] = saturated_utility(out.details["utility"])
    for a in arms.values():
        for name, v in a.values.items():
            out.metrics[f"utility_{a.name}_{name}"] = info(v, ci=a.ci.get(name),
                                                           label=f"{a.name}: {name.replace('_', ' ')} on the real test split")
    gain = arms["synthetic"].values["minority_recall"] - arms["none"].values["minority_recall"]
    best_base = max((a for a in arms.values() if a.name not in SYNTHETIC_ARMS),
                    key=lambda a: a.values["balanced_accuracy"])
    out.details["utility_summary"] = {
        "synthetic_beats_all_baselines_balanced_accuracy": bool(
            arms["synthetic"].values["balanced_accuracy"] > best_base.values["balanced_accuracy"]),
        "best_baseline": best_base.name,
    }
    label = "minority recall: synthetic − no augmentation"
    out.metrics["utility_gain_minority_recall"] = (gate(gain, 0.0, label=label) if cfg.require_utility_gain
                                                   else info(gain, label=label))
    return out
