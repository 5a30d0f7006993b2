"""The validation stage end to end: features → gates → flags → utility → verdict → report.

``validate_cohort`` is what the workers, the API and the CLI call; it reads the sample dir and
the dataset version through the store and hands arrays to ``validate_arrays``, which needs no
store (tests call it with arrays loaded from npz files).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from synthcohort.validation.collapse import bins_test, prdc, tsne_plot
from synthcohort.validation.config import MIN_SAMPLES, ValidationConfig
from synthcohort.validation.copies import screen_copies
from synthcohort.validation.encoder import FeatureExtractor, domain_encoder
from synthcohort.validation.flags import (
    broken_flags,
    copy_flags,
    merge_flags,
    outlier_flags,
)
from synthcohort.validation.frechet import Whitening, fd, relative_similarity
from synthcohort.validation.kid import kid
from synthcohort.validation.reference import (
    REFERENCE_FRACTION,
    indices_fingerprint,
    reference_indices,
    reference_seed,
)
from synthcohort.validation.verdict import Metric, ValidationReport, decide, gate, info

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.progress import Progress, ProgressCallback
from synthcohort.core.seeding import derive_seed, numpy_rng
from synthcohort.core.version import code_version


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


class _Steps:
    """Progress of the stage as numbered steps; also times each named stage (seconds)."""

    def __init__(self, callback: ProgressCallback | None, total: int):
        self.callback, self.total, self.step = callback, total, 0
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str = "", **metrics: float) -> None:
        now = time.perf_counter()
        self.timings[name or f"step{self.step + 1}"] = round(now - self._t, 4)
        self._t = now
        self.step += 1
        if self.callback is not None:
            self.callback(Progress("validate", min(self.step, self.total), self.total, dict(metrics)))


def validate_cohort(
    dataset_id: str,
    class_name: str,
    sample_dir: Path,
    out_dir: Path,
    *,
    config: ValidationConfig | None = None,
    provenance: dict | None = None,
    progress: ProgressCallback | None = None,
) -> ValidationReport:
    """Validate the cohort in ``sample_dir`` against dataset version ``dataset_id``; writes
    ``out_dir/report.json``, ``report.html`` and the pictures."""
    from synthcohort.imaging.sample_dir import read_sample_dir
    from synthcohort.store.datasets import DatasetStore

    dataset = DatasetStore().get(dataset_id)
    meta = dataset.meta
    if class_name not in list(meta.classes):
        raise InvalidInputError(f"unknown class {class_name!r}; the dataset has {list(meta.classes)}", field="class_name")
    samples = read_sample_dir(sample_dir)
    other = sorted({r.get("class", "") for r in samples.rows} - {class_name, ""})
    if other:
        raise InvalidInputError(f"manifest.csv lists classes {other}, not only {class_name!r}", path=Path(sample_dir) / "manifest.csv")
    prov = {"dataset_id": dataset_id, "sample_dir": str(sample_dir)}
    prov.update(provenance or {})
    return validate_arrays(
        dataset.split("train"),
        dataset.split("val"),
        dataset.split("test", purpose="validation"),
        samples.images,
        synthetic_masks=samples.masks,
        sample_files=[r["file"] for r in samples.rows],
        manifest_rows=samples.rows,
        class_index=dataset.class_index(class_name),
        class_names=list(meta.classes),
        out_dir=out_dir,
        config=config,
        provenance=prov,
        progress=progress,
        dataset_key=dataset_id,
    )


def validate_arrays(
    real_train: SplitLike,
    real_val: SplitLike,
    real_test: SplitLike,
    synthetic: np.ndarray,
    *,
    class_index: int,
    class_names: Sequence[str] | None = None,
    synthetic_masks: np.ndarray | None = None,
    sample_files: Sequence[str] | None = None,
    manifest_rows: Sequence[dict[str, str]] | None = None,
    out_dir: Path | None = None,
    config: ValidationConfig | None = None,
    provenance: dict | None = None,
    progress: ProgressCallback | None = None,
    dataset_key: str | None = None,
    encoder: FeatureExtractor | None = None,
) -> ValidationReport:
    """Validate synthetic images of class ``class_index`` against real train/val/test splits.

    Similarity uses the real hold-out (``real_test``) as reference; the encoder, the segmenter
    and every baseline learn from ``real_train`` only; ``real_val`` is used for model selection
    in the utility experiment. With ``out_dir`` the report files are written there.

    Real-vs-real references (S_FID, KID, PRDC, bins) use a seeded reference sample of the class's
    train images that the domain encoder is trained without (``validation.reference``); a given
    ``encoder`` must have been built with ``domain_encoder(..., exclude=reference_indices(...))``
    for the same seed, otherwise the report warns that S_FID is biased towards synthetic data.
    Copy screening still compares against every train image.
    """
    cfg = config or ValidationConfig()
    seed = cfg.seed
    chunk = cfg.nn_chunk_bytes
    warnings: list[str] = []
    metrics: dict[str, Metric] = {}
    details: dict[str, Any] = {}
    syn = np.asarray(synthetic, dtype=np.float32)
    tr_x, tr_y = np.asarray(real_train.images, np.float32), np.asarray(real_train.labels).reshape(-1).astype(np.int64)
    te_x, te_y = np.asarray(real_test.images, np.float32), np.asarray(real_test.labels).reshape(-1).astype(np.int64)
    _check_inputs(syn, tr_x, tr_y, te_x, te_y, class_index, synthetic_masks)
    spatial_dims = tr_x.ndim - 2
    masks_used = synthetic_masks is not None and getattr(real_train, "masks", None) is not None and getattr(real_test, "masks", None) is not None
    if synthetic_masks is not None and not masks_used:
        warnings.append("synthetic masks given but the dataset has no real masks; Dice gate not computed")
    n_steps = 7 + int(masks_used) + int(cfg.utility)
    step = _Steps(progress, n_steps)
    class_name = class_names[class_index] if class_names else str(class_index)

    # 1. features ------------------------------------------------------------------------------
    # the real reference sample: train images of the class that the encoder does not see
    ref_seed = reference_seed(seed)
    ref_idx = reference_indices(tr_y, class_index, seed=ref_seed, min_size=MIN_SAMPLES)
    ref_key = indices_fingerprint(ref_idx)
    enc = encoder or domain_encoder(
        tr_x, tr_y, dataset_key=dataset_key, seed=derive_seed(seed, "encoder") % 2**31,
        feature_dim=cfg.feature_dim, epochs=cfg.encoder_epochs, batch_size=cfg.encoder_batch_size,
        exclude=ref_idx,
    )
    if enc.excluded != ref_key:
        warnings.append("the given encoder was not trained without this validation's reference sample; real-vs-real "
                        "references (S_FID, KID, PRDC, bins) are then biased in favour of synthetic data")
    extractors = [enc.describe()]
    f_train_all = enc(tr_x)
    f_test_all = enc(te_x)
    f_syn = enc(syn)
    in_class_tr, in_class_te = tr_y == class_index, te_y == class_index
    f_train, f_hold = f_train_all[in_class_tr], f_test_all[in_class_te]
    f_ref = f_train_all[ref_idx]
    details["reference"] = {
        "n": int(len(ref_idx)), "n_class_train": int(in_class_tr.sum()), "fraction": REFERENCE_FRACTION,
        "min_size": MIN_SAMPLES, "seed": int(ref_seed), "fingerprint": ref_key,
        "encoder_trained_without_it": enc.excluded == ref_key,
        "used_for": ["s_fid", "kid_reference", "s_fid_inception", "prdc real vs real", "bins real occupancy", "tsne"],
    }
    step("features")

    # 2. similarity gate (relative FD) and KID ------------------------------------------------------
    # FD in features whitened by the encoder's own training images (none of them is compared)
    white = Whitening.fit(np.delete(f_train_all, ref_idx, axis=0))
    sim = relative_similarity(white(f_ref), white(f_syn), white(f_hold), seed=derive_seed(seed, "s_fid"),
                              bootstrap=cfg.bootstrap, threshold=cfg.similarity_threshold)
    details["whitening"] = {"fitted_on": "encoder training images (train split without the reference)",
                            "n": int(len(tr_x) - len(ref_idx)), "dim": white.dim}
    warnings += sim.warnings
    similarity_is_gate = spatial_dims == 2 or not masks_used
    label = (f"FD(real reference, hold-out) / FD(synthetic, hold-out), N = {sim.n}, hold-out {sim.n_holdout}, "
             f"{enc.name.split('(')[0]}, whitened")
    metrics["s_fid"] = (gate(sim.s_fid, cfg.similarity_threshold, ci=sim.ci, label=label) if similarity_is_gate
                        else info(sim.s_fid, ci=sim.ci, label=label + " (informational: the Dice gate decides for mask-conditioned 3D)"))
    metrics["fd_synthetic"] = info(sim.fd_synthetic, label="FD(synthetic, hold-out), domain encoder, whitened")
    metrics["fd_reference"] = info(sim.fd_reference, label="FD(real reference sample, unseen by the encoder, hold-out), domain encoder, whitened")
    k_syn = kid(f_syn, f_hold, seed=derive_seed(seed, "kid"), subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size)
    k_ref = kid(f_ref, f_hold, seed=derive_seed(seed, "kid"), subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size)
    metrics["kid_synthetic"] = info(k_syn.value, ci=k_syn.ci, label=f"KID(synthetic, hold-out), subsets of {k_syn.subset_size}")
    metrics["kid_reference"] = info(k_ref.value, ci=k_ref.ci, label=f"KID(real reference, hold-out), subsets of {k_ref.subset_size}")
    if cfg.use_inception:
        from synthcohort.validation.inception import inception_features_available

        inc, why = inception_features_available(spatial_dims)
        if inc is None:
            warnings.append(why)
        else:
            extractors.append(inc.describe())
            rng = numpy_rng(derive_seed(seed, "inception"))
            tr_cls = tr_x[ref_idx]  # the same reference images as S_FID
            n = min(len(syn), len(tr_cls))
            g_hold = inc(te_x[in_class_te])
            g_syn = inc(syn[rng.choice(len(syn), n, replace=False)])
            g_ref = inc(tr_cls[rng.choice(len(tr_cls), n, replace=False)])
            fid_syn, fid_ref = fd(g_syn, g_hold), fd(g_ref, g_hold)
            metrics["fid_inception"] = info(fid_syn, label=f"standard FID (Inception-v3) synthetic vs hold-out, N = {n}")
            metrics["fid_inception_reference"] = info(fid_ref, label="standard FID (Inception-v3) real reference vs hold-out")
            metrics["s_fid_inception"] = info(fid_ref / max(fid_syn, 1e-12), label="relative FID with Inception features")
    else:
        warnings.append("Inception features disabled by config (use_inception = false); standard FID not computed")
    step("similarity")

    # 3. Dice gate ------------------------------------------------------------------------------------
    if masks_used:
        from synthcohort.validation.dice import dice_gate

        tr_m, te_m = np.asarray(real_train.masks), np.asarray(real_test.masks)
        dres = dice_gate(
            tr_x, tr_m, te_x[in_class_te], te_m[in_class_te], syn, np.asarray(synthetic_masks),
            seed=derive_seed(seed, "dice") % 2**31, epochs=cfg.segmenter_epochs,
            batch_size=cfg.segmenter_batch_size, bootstrap=cfg.bootstrap,
        )
        metrics["dice_ratio"] = gate(dres.ratio, cfg.dice_ratio_threshold, ci=dres.ci, label="DSC_syn / DSC_real (real-trained MONAI UNet)")
        metrics["dsc_synthetic"] = info(dres.dsc_synthetic, label="mean Dice of the segmenter on synthetic images vs their conditioning masks")
        metrics["dsc_real"] = info(dres.dsc_real, label="mean Dice of the segmenter on real hold-out pairs")
        step("dice")

    # 4. mode collapse ------------------------------------------------------------------------------------
    rng = numpy_rng(derive_seed(seed, "prdc"))
    n = min(len(f_syn), len(f_ref))
    p_syn = prdc(f_hold, f_syn[rng.choice(len(f_syn), n, replace=False)], pr_k=cfg.pr_k, dc_k=cfg.dc_k, chunk_bytes=chunk)
    p_real = prdc(f_hold, f_ref[rng.choice(len(f_ref), n, replace=False)], pr_k=cfg.pr_k, dc_k=cfg.dc_k, chunk_bytes=chunk)
    for name in ("precision", "recall", "density", "coverage"):
        metrics[name] = info(getattr(p_syn, name), label=f"{name} of synthetic vs hold-out (N = {n})")
        metrics[f"{name}_real"] = info(getattr(p_real, name), label=f"{name} of the real reference vs hold-out (N = {n})")
    metrics["coverage_ratio"] = gate(p_syn.coverage / max(p_real.coverage, 1e-12), cfg.coverage_ratio_threshold,
                                     label="coverage(synthetic) / coverage(real vs real)")
    bins = bins_test(f_ref, f_syn, seed=derive_seed(seed, "bins") % 2**31, max_bins=cfg.max_bins, alpha=cfg.bins_alpha,
                     cells_from=f_train)
    metrics["entropy_ratio"] = gate(bins.entropy_ratio, cfg.entropy_ratio_threshold,
                                    label=f"H/log K of synthetic / of real bin occupancy (K = {bins.k})")
    metrics["bins_different"] = info(bins.different_bins, label=f"bins with different occupancy ({bins.correction})")
    details["bins"] = {"k": bins.k, "real_counts": bins.real_counts, "synthetic_counts": bins.synthetic_counts,
                       "entropy_real": bins.entropy_real, "entropy_synthetic": bins.entropy_synthetic,
                       "alpha": bins.alpha, "correction": bins.correction}
    step("mode_collapse")

    # 5. copies and flags --------------------------------------------------------------------------------------
    screen = screen_copies(f_syn, f_train_all, f_test_all, np.nan_to_num(syn), tr_x, te_x,
                           quantile=cfg.copy_quantile, chunk_bytes=chunk)
    metrics["authenticity"] = info(screen.authenticity, label="fraction authentic (Alaa et al. 2022)")
    step("copy_screening")
    o_flags, radius = outlier_flags(f_syn, f_train, k=cfg.outlier_k, quantile=cfg.outlier_quantile, chunk_bytes=chunk)
    flags = merge_flags(copy_flags(screen), o_flags, broken_flags(syn, tr_x, cfg.saturated_fraction))
    details["thresholds"] = {"near_copy_feature_distance": screen.feature_threshold,
                             "near_copy_pixel_correlation": screen.correlation_threshold, "outlier_radius": radius}
    train_ids = list(getattr(real_train, "sample_ids", None) or [f"train-{i}" for i in range(len(tr_x))])
    files = list(sample_files or [f"{i:06d}" for i in range(len(syn))])
    samples = [
        {
            "index": int(manifest_rows[j]["index"]) if manifest_rows and manifest_rows[j].get("index", "").isdigit() else j,
            "file": files[j],
            "flags": [f.to_json() for f in flags[j]],
            "nearest_train": {
                "sample_id": str(train_ids[screen.nearest_index[j]]),
                "feature_distance": float(screen.feature_distance[j]),
                "pixel_correlation": float(screen.pixel_correlation[j]),
                "pixel_sample_id": str(train_ids[screen.pixel_index[j]]),
            },
        }
        for j in range(len(syn))
    ]
    for kind in ("near_copy", "outlier", "broken"):
        metrics[f"flagged_{kind}"] = info(sum(any(f.kind == kind for f in fl) for fl in flags), label=f"samples flagged {kind}")
    step("flags")

    # 6. utility -------------------------------------------------------------------------------------------------
    if cfg.utility:
        from synthcohort.validation.utility import utility_experiment

        va_x, va_y = np.asarray(real_val.images, np.float32), np.asarray(real_val.labels).reshape(-1).astype(np.int64)
        num_classes = len(class_names) if class_names else int(max(tr_y.max(), te_y.max(), va_y.max()) + 1)
        if len(np.unique(tr_y)) < 2:
            warnings.append("utility not computed: the training split has a single class")
        else:
            arms = utility_experiment(
                (tr_x, tr_y), (va_x, va_y), (te_x, te_y), syn, minority=class_index, num_classes=num_classes,
                seed=derive_seed(seed, "utility"), epochs=cfg.utility_epochs, seeds=cfg.utility_seeds,
                batch_size=cfg.utility_batch_size, bootstrap=cfg.bootstrap,
            )
            details["utility"] = {a.name: {"values": a.values, "ci": a.ci, "n_added": a.n_added, "per_seed": a.per_seed} for a in arms.values()}
            for a in arms.values():
                for m, v in a.values.items():
                    metrics[f"utility_{a.name}_{m}"] = info(v, ci=a.ci.get(m), label=f"{a.name}: {m.replace('_', ' ')} on the real test split")
            gain = arms["synthetic"].values["minority_recall"] - arms["none"].values["minority_recall"]
            best_base = max((a for a in arms.values() if a.name != "synthetic"), key=lambda a: a.values["balanced_accuracy"])
            details["utility_summary"] = {
                "synthetic_beats_all_baselines_balanced_accuracy": bool(
                    arms["synthetic"].values["balanced_accuracy"] > best_base.values["balanced_accuracy"]),
                "best_baseline": best_base.name,
            }
            metrics["utility_gain_minority_recall"] = (
                gate(gain, 0.0, label="minority recall: synthetic − no augmentation") if cfg.require_utility_gain
                else info(gain, label="minority recall: synthetic − no augmentation"))
        step("utility")

    verdict, reasons = decide(metrics, samples)
    prov = _provenance(provenance, cfg, class_name, class_index, manifest_rows, extractors)
    details["timings_s"] = step.timings
    report = ValidationReport(verdict, reasons, metrics, samples, extractors, prov, warnings, details)
    if out_dir is not None:
        from synthcohort.validation.report import write_report

        out_dir = Path(out_dir)
        tsne_path = None
        if cfg.tsne:
            tsne_path = tsne_plot(f_ref, f_syn, out_dir / "tsne.png", seed=derive_seed(seed, "tsne") % 2**31,
                                  max_points=cfg.tsne_max_points, title=f"t-SNE, class {class_name}: real reference vs synthetic")
            step("tsne")
        write_report(report, out_dir, real_images=tr_x[in_class_tr], synthetic=syn, train_images=tr_x,
                     screen=screen, tsne_png=tsne_path, seed=seed, gallery_max=cfg.gallery_max)
        report.out_dir = str(out_dir)
    step.step = step.total - 1
    step("report")
    return report


def _check_inputs(syn, tr_x, tr_y, te_x, te_y, class_index, syn_masks) -> None:
    if syn.ndim not in (4, 5):
        raise InvalidInputError(f"synthetic images must be (N, C, H, W) or (N, C, D, H, W), got shape {syn.shape}", field="samples")
    if syn.shape[1:] != tr_x.shape[1:]:
        raise InvalidInputError(f"synthetic images have shape {syn.shape[1:]}, the dataset {tr_x.shape[1:]}", field="samples")
    if syn_masks is not None and (len(syn_masks) != len(syn) or syn_masks.shape[2:] != syn.shape[2:]):
        raise InvalidInputError(f"masks of shape {syn_masks.shape} do not match images {syn.shape}", field="samples")
    if len(syn) < MIN_SAMPLES:
        raise InvalidInputError(f"{len(syn)} synthetic samples; at least {MIN_SAMPLES} are needed", field="samples")
    n_tr, n_te = int((tr_y == class_index).sum()), int((te_y == class_index).sum())
    if n_tr < MIN_SAMPLES or n_te < MIN_SAMPLES:
        raise InvalidInputError(
            f"class {class_index} has {n_tr} training and {n_te} hold-out images; at least {MIN_SAMPLES} of each are needed",
            field="class_name")


def _provenance(user: dict | None, cfg: ValidationConfig, class_name: str, class_index: int,
                rows: Sequence[dict[str, str]] | None, extractors: list[dict[str, str]]) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "class_name": class_name,
        "class_index": class_index,
        "seeds": {"validation": cfg.seed},
        "extractors": extractors,
        "code_version": code_version(),
        "config": cfg.model_dump(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if rows:
        prov["model_ids"] = sorted({r.get("model_id", "") for r in rows} - {""})
        prov["seeds"]["sampling"] = sorted({r.get("seed", "") for r in rows} - {""})
    prov.update(user or {})
    return prov
