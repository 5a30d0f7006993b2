"""3D cohorts measured against the Dice standard (issue 22): mask-conditioned hippocampus volumes
and class-conditional AdrenalMNIST3D shapes.

Hippocampus (MSD Task04, ``../shared/data/hippocampus``): imported through the project's store
(``store.ingest.import_path``, 32×48×32, MR percentiles) with its seeded split; each case file is
one split unit (the public files name no subject, so a subject's left and right crops, if both
are among the 260, cannot be kept together; the sample ids of every split are in the JSON). For
each family and generator seed:

1. train mask-conditioned on the train split's image/mask pairs for ``--steps`` (default
   ``STEPS_60MIN``: the steps 60 minutes reach on 2 CPU cores), cached like ``benchmarks.quality``;
2. sample one image per real train mask, plus one per *new* mask: train masks deformed by a seeded
   random affine map (rotation ≤ 10° about each axis, scale 0.9–1.1, shift ≤ 2 voxels, nearest
   neighbour, ``augmented_masks``), so the cohort is not only the train masks repainted;
3. write the cohort as a sample dir and run the validation stage through ``validate_cohort`` (the
   API's path): the Dice gate, which is issue 22's DSC ratio (``validation.dice``: a MONAI UNet
   trained on the synthetic pairs against one trained on the real train pairs, both scored on the
   real test split, equal optimiser steps, paired CI over test volumes), the mask fidelity beside
   it, 3D similarity (S_FID, KID, coverage, entropy; informational beside the Dice gate) and copy
   screening against the train volumes (near-copy flags, authenticity);
4. the same images with their masks permuted among samples (a derangement) go through
   ``validate_cohort`` too: this shuffled-mask control must fail the Dice gate;
5. real + synthetic against real alone (the gain): one more segmenter with the gate's seed and the
   real arm's optimiser steps, on the same test volumes (paired CI).

AdrenalMNIST3D (28³ shape masks): hyperplasia is cut to 1:10 in train (seeded; the kept indices are
in the JSON), each family trains class-conditionally and draws as many hyperplasia volumes as
balance the classes; the validation stage scores S_FID and flags, and the validation stage's
utility protocol (``validation.utility``, 3D through ``spatial_dims``; MONAI's ``Classifier`` by
default, ``--classifier``) scores minority recall against random oversampling, through
``benchmarks.quality``'s machinery: each cohort in the arms of ``--adrenal-arms`` (by default the
cohort alone, real + synthetic hyperplasia), every arm over ``--utility-seeds`` classifier seeds.
``--families`` with no name runs only the baselines.

    python -m benchmarks.quality3d [--families wgan-gp diffusion] [--seeds 0 1 2] [--steps N]
                                   [--sampling '{"latent-diffusion": {"eta": 1.0}}']
                                   [--threads 1] [--train-only] [--no-adrenal] [--time-steps K]

``--time-steps K`` only measures each family's seconds per step (K steps, 1 thread advised) at
the hippocampus size. Results go to ``benchmarks/results/quality3d-<time>/`` (JSON, a markdown
table, the validation reports); trained generators to ``--models-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import affine_transform

from benchmarks.quality import RealData, evaluate_cohort, minority_subset, trained_model, utility_row
from synthcohort.core.atomic import atomic_write_text
from synthcohort.core.device import select_device
from synthcohort.core.errors import InvalidInputError
from synthcohort.core.seeding import derive_seed, numpy_rng
from synthcohort.core.settings import get_settings
from synthcohort.generators.base import GeneratorSpec, TrainingData
from synthcohort.generators.configs import parse_config
from synthcohort.generators.registry import available, get_generator
from synthcohort.imaging.readers import read_medmnist
from synthcohort.imaging.resizing import parse_size
from synthcohort.imaging.sample_dir import write_sample_dir
from synthcohort.store.datasets import DatasetVersion
from synthcohort.store.ingest import import_path
from synthcohort.validation.classifiers import CLASSIFIERS
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.dice import dice_scores, equal_step_epochs, paired_ci
from synthcohort.validation.pipeline import validate_cohort
from synthcohort.validation.segmenter import segment, train_segmenter
from synthcohort.validation.utility import SYNTHETIC_ARMS

ROOT = Path(__file__).resolve().parents[1]
HIPPOCAMPUS = ROOT.parent / "shared" / "data" / "hippocampus"
ADRENAL = ROOT.parent / "shared" / "data" / "medmnist" / "adrenalmnist3d.npz"
CLASS = "hippocampus"
SIZE = (32, 48, 32)
ADRENAL_CLASSES = ("normal", "hyperplasia")
ADRENAL_MINORITY, ADRENAL_RATIO = 1, 10  # hyperplasia cut to 1 per 10 normal in train

# 3D settings per family (no small-data preset exists for volumes): small batches, and no
# self-attention in the diffusion UNet (at 16×24×16 one attention map has 6144² entries). Measured
# peak memory of one training step at 32×48×32 on CPU: diffusion 5 GB at batch 2 (MONAI's 3D UNet;
# batch 8 was killed for memory at 13 GB), so the diffusion batch is 2; wgan-gp takes batch 4 (at
# batch 8 one step took 78 s wall under the load described below). Those memory figures predate the
# fused attention (generators.nets.denoiser_unet), which leaves a 32×48×32 volume's step 0.4 GiB instead
# of 3.9; the batch of 2 was kept so far.
CONFIG_3D: dict[str, dict] = {
    "wgan-gp": {"batch_size": 4},
    "diffusion": {"batch_size": 2, "attention_levels": (False, False), "beta_schedule": "squaredcos_cap_v2",
                  "sampling_steps": 25},
}
# CPU seconds per training step at 32×48×32 with CONFIG_3D and 1 torch thread, measured with
# ``--time-steps K --threads 1`` on this project's 2-core CPU machine while it was otherwise idle:
# wgan-gp 12.73 s (2026-12-07 morning; 13.39 s that evening on another machine of the same kind),
# latent diffusion's autoencoder phase 0.97 s; diffusion 4.66 s with its U-Net's attention fused
# (K = 10, 2026-12-07 evening; a 1,100-step training run of the hippocampus seed 0 took 4.9 s a step
# of CPU). A K = 2 reading of 2.95 s that morning set the budget to 1,220 steps; it did not hold up,
# and no cohort was scored at it. Before the fusion: 12.27 s with the explicit N² map of the
# middle block at 16×24×16 tokens. A first measurement on 2026-12-06, with four other agents loading
# the machine (load average 9–12), gave wgan-gp 14.12 s and diffusion 8.68 s of CPU (28.6 s and 17.8 s wall); the idle
# one is the budget's. STEPS_60MIN = 3600 s / that: two families side by side with --threads 1 each
# fill 60 minutes of 2 cores. The adrenal row (28³, 45 % of the voxels) costs less a step: latent
# diffusion's autoencoder 0.43 s and denoiser 0.12 s (1 thread beside one other job, 2026-12-07), so
# its 60 CPU-min reach about 26,000 steps; RESULTS.md scores it at 8,000 and 16,000 (pass --steps).
# Sampling costs pixel diffusion 0.85 CPU s per volume and DDIM step (batch 8, 1 thread): a 364-volume
# hippocampus cohort at 25 steps is about 128 CPU-min, twice its training budget.
SECONDS_PER_STEP = {"wgan-gp": 12.73, "diffusion": 4.66}
STEPS_60MIN = {fam: int(3600 // s) for fam, s in SECONDS_PER_STEP.items()}
SAMPLE_BATCH = 8  # volumes per generator call when sampling (memory, not speed)


def three_d_families() -> list[str]:
    """The registered families that build a 3D mask-conditioned generator (others refuse)."""
    spec = GeneratorSpec(3, 1, (16, 16, 16), 1, mask_conditioned=True)
    out = []
    for fam in available():
        family = get_generator(fam)
        try:
            family(spec, family.Config(**CONFIG_3D.get(fam, {})), seed=0)
        except (InvalidInputError, ValueError, NotImplementedError):
            continue
        out.append(fam)
    return out


def augmented_masks(masks: np.ndarray, n: int, *, seed: int, max_degrees: float = 10.0, max_scale: float = 0.1,
                    max_shift: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` new binary masks (n, 1, D, H, W): train masks drawn with replacement, each deformed by
    a random affine map about the volume's centre (rotations up to ``max_degrees`` about each axis,
    isotropic scale 1 ± ``max_scale``, shift up to ``max_shift`` voxels; nearest neighbour). A
    deformation that empties the mask is redrawn. Returns the masks and the source index of each."""
    rng = numpy_rng(derive_seed(seed, "augmented-masks"))
    spatial = np.array(masks.shape[2:], dtype=np.float64)
    centre = (spatial - 1) / 2
    out, src = np.empty((n, *masks.shape[1:]), np.uint8), rng.integers(0, len(masks), n)
    for k, i in enumerate(src):
        m = masks[i, 0] > 0
        while True:
            a = np.deg2rad(rng.uniform(-max_degrees, max_degrees, 3))
            rot = _rotation(*a) * rng.uniform(1 - max_scale, 1 + max_scale)
            inv = np.linalg.inv(rot)  # affine_transform maps output voxels to input voxels
            offset = centre - inv @ (centre + rng.uniform(-max_shift, max_shift, 3))
            new = affine_transform(m.astype(np.uint8), inv, offset=offset, order=0, mode="constant")
            if new.any():
                break
        out[k, 0] = new
    return out, src


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    """Rotation by a, b, c radians about the first, second and third axis."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    r0 = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    r1 = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    r2 = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return r0 @ r1 @ r2


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point: every sample gets another sample's mask."""
    perm = numpy_rng(derive_seed(seed, "shuffled-masks")).permutation(n)
    return np.roll(perm, 1)[np.argsort(perm)]


@dataclass(frozen=True)
class Hippocampus:
    """The imported dataset version and the splits every cohort is judged against."""

    dataset: DatasetVersion
    train_x: np.ndarray
    train_m: np.ndarray
    test_x: np.ndarray
    test_m: np.ndarray

    @classmethod
    def load(cls, source: Path, *, split_seed: int, val: float, test: float,
             size: tuple[int, ...] = SIZE) -> Hippocampus:
        ds = import_path(source, modality="MR", size=size, class_name=CLASS, seed=split_seed, val=val, test=test)
        tr, te = ds.split("train"), ds.split("test", purpose="validation")
        return cls(ds, tr.images, tr.masks, te.images, te.masks)

    def split_record(self) -> dict:
        """What a rerun needs to check it split the same way: seed, rule and the sample ids."""
        ds = self.dataset
        return {"dataset_id": ds.id, "split_origin": ds.meta.split_origin, "unit": "case file (one patient crop)",
                **{s: list(ds.split(s, purpose="validation").sample_ids) for s in ("train", "val", "test")}}


def segmentation_arms(real: Hippocampus, syn_x: np.ndarray, syn_m: np.ndarray, gate_dice: dict, *,
                      cfg: ValidationConfig, seed: int) -> dict:
    """Issue 22's DSC ratio is the gate's (``validation.dice``: trained on synthetic vs on real, both
    on the real test split, which is the gate's hold-out); this adds real + synthetic against real
    alone (the gain), a segmenter with the gate's seed and the real arm's optimiser steps.
    ``gate_dice``: the report's ``details["dice"]``; ``seed`` seeds the bootstrap."""
    x, m = np.concatenate([real.train_x, syn_x]), np.concatenate([real.train_m, syn_m])
    net = train_segmenter(x, m, seed=derive_seed(cfg.seed, "dice") % 2**31, batch_size=cfg.segmenter_batch_size,
                          epochs=equal_step_epochs(cfg.segmenter_epochs, len(real.train_x), len(x)))
    d_mix = dice_scores(segment(net, real.test_x), real.test_m)
    d_real = np.asarray(gate_dice["holdout_dice_real"])
    gain = float(d_mix.mean() - d_real.mean())
    gain_ci = paired_ci(d_mix, d_real, lambda a, b: a.mean() - b.mean(), seed=derive_seed(seed, "gain-ci"),
                        bootstrap=cfg.bootstrap)
    return {"dsc_real": float(d_real.mean()), "dsc_synthetic_trained": float(np.mean(
            gate_dice["holdout_dice_synthetic_trained"])), "dsc_real_plus_synthetic": float(d_mix.mean()),
            "gain": {"value": gain, "ci": gain_ci}}


def gate_summary(report) -> dict:
    """The figures of one validation report that the 3D table shows."""
    m = report.metrics

    def val(name: str) -> float | None:
        return None if name not in m else m[name].value

    d = m.get("dice_ratio")
    return {"verdict": report.verdict,
            "dice_ratio": None if d is None else {"value": d.value, "ci": d.ci, "passed": d.passed},
            "dsc_synthetic": val("dsc_synthetic"), "dsc_real": val("dsc_real"), "mask_fidelity": val("mask_fidelity"),
            "s_fid": {"value": m["s_fid"].value, "ci": m["s_fid"].ci},
            **{k: val(k) for k in ("kid_synthetic", "kid_reference", "coverage_ratio", "entropy_ratio", "precision",
                                   "recall", "authenticity")},
            "flagged": {k: int(m[f"flagged_{k}"].value) for k in ("near_copy", "outlier", "broken")},
            "n_flagged": len(report.flagged)}


def evaluate_hippocampus_cohort(real: Hippocampus, images: np.ndarray, masks: np.ndarray, out_dir: Path, *,
                                cfg: ValidationConfig, seed: int, model_id: str, control: bool = True) -> dict:
    """Steps 3–5 of the module docstring for one cohort (images with the masks they were drawn for);
    without ``control``, step 4 is left out (``shuffled_control`` is None)."""
    rows, dice = {"shuffled_masks": None}, {}
    arms = [("cohort", masks)] + ([("shuffled_masks", masks[derangement(len(masks), seed)])] if control else [])
    for name, m in arms:
        write_sample_dir(out_dir / name / "samples", images, masks=m, class_name=CLASS, seed=seed, model_id=model_id)
        report = validate_cohort(real.dataset.id, CLASS, out_dir / name / "samples", out_dir / name / "report",
                                 config=cfg, provenance={"benchmark": "quality3d", "arm": name})
        rows[name], dice[name] = gate_summary(report), report.details["dice"]
    return {**rows["cohort"], "shuffled_control": rows["shuffled_masks"],
            "control_failed": None if not control else rows["shuffled_masks"]["dice_ratio"]["passed"] is False,
            "segmentation": segmentation_arms(real, images, masks, dice["cohort"], cfg=cfg, seed=seed),
            "report": str(out_dir / "cohort" / "report" / "report.html")}


def family_budget(fam: str, args) -> tuple[dict, int]:
    """A family's config (``CONFIG_3D`` under ``--config``) and its steps (``--steps`` or ``STEPS_60MIN``)."""
    steps = args.steps or STEPS_60MIN.get(fam)
    if not steps:
        raise InvalidInputError(f"no measured 60-minute budget for {fam!r}; pass --steps", field="steps")
    return {**CONFIG_3D.get(fam, {}), **json.loads(args.config).get(fam, {})}, steps


SAMPLING_FIELDS = ("sampling_steps", "eta", "guidance_scale", "sampler")  # read only when drawing


def with_sampling(model, fam: str, args):
    """The trained ``model`` drawing with ``--sampling``'s fields for ``fam`` (DDIM steps, η, guidance,
    sampler) instead of its config's. Training never reads them, so one cached training serves every
    sampling setting (the cache key hashes the whole config); the row's ``config`` records what drew."""
    update = json.loads(args.sampling).get(fam, {})
    if not update:
        return model
    other = sorted(set(update) - set(SAMPLING_FIELDS))
    if other:
        raise InvalidInputError(f"--sampling takes only {', '.join(SAMPLING_FIELDS)}; {', '.join(other)} change "
                                "training: put them in --config", field="sampling")
    model.config = parse_config(fam, {**model.config.model_dump(), **update})  # validated like a request
    return model


def run_hippocampus(families: list[str], args, device, out_dir: Path, *, source: Path = HIPPOCAMPUS) -> dict:
    """Every family × generator seed on the hippocampus (module docstring, steps 1–5)."""
    real = Hippocampus.load(source, split_seed=args.split_seed, val=args.val, test=args.test, size=args.size)
    cfg = ValidationConfig(seed=args.validation_seed, utility=False, **json.loads(args.validation))
    n_new = len(real.train_m) if args.new_masks is None else args.new_masks
    print(f"\n== hippocampus {real.dataset.id}: {len(real.train_x)} train / {len(real.test_x)} test volumes; "
          f"cohort = {len(real.train_m)} train masks + {n_new} new masks")
    result = {"dataset": "hippocampus", "split": real.split_record(), "validation_config": cfg.model_dump(mode="json"),
              "n_new_masks": n_new, "families": {}}
    data = TrainingData(real.train_x, np.zeros(len(real.train_x), np.int64), real.train_m, class_names=(CLASS,),
                        dataset_id=real.dataset.id)
    spec = GeneratorSpec(3, 1, tuple(real.train_x.shape[2:]), 1, mask_conditioned=True)
    for fam in families:
        config, steps = family_budget(fam, args)
        for seed in args.seeds:
            run = argparse.Namespace(**{**vars(args), "seed": seed})
            model, train_s = trained_model(f"hippocampus-{real.dataset.id}", fam, get_generator(fam), spec, config,
                                           steps, data, run, device)
            model = with_sampling(model, fam, args)
            if args.train_only:
                continue
            new, src = augmented_masks(real.train_m, n_new, seed=seed)
            masks = np.concatenate([real.train_m, new])
            t0 = time.perf_counter()
            images = model.sample(len(masks), 0, seed=derive_seed(seed, "quality3d-sample"), masks=masks,
                                  batch_size=SAMPLE_BATCH)
            sample_s = time.perf_counter() - t0
            row = evaluate_hippocampus_cohort(real, images, masks, out_dir / f"hippocampus-{fam}-seed{seed}", cfg=cfg,
                                              seed=seed, model_id=f"{fam}-seed{seed}",
                                              control=args.control_seeds is None or seed in args.control_seeds)
            row.update(steps=steps, train_seconds=train_s, sample_seconds=sample_s, new_mask_sources=src.tolist(),
                       config=model.config.model_dump(mode="json"))
            result["families"].setdefault(fam, {})[str(seed)] = row
            d, t = row["dice_ratio"], row["segmentation"]
            print(f"  {fam} seed {seed}: Dice ratio {d['value']:.3f} ({'pass' if d['passed'] else 'fail'}), "
                  f"mask fidelity {row['mask_fidelity']:.3f}, gain {t['gain']['value']:+.3f}, "
                  + ("" if row["control_failed"] is None else
                     f"shuffled control {row['shuffled_control']['dice_ratio']['value']:.3f} "
                     f"({'fails' if row['control_failed'] else 'PASSES'}), ") + f"copies {row['flagged']['near_copy']}")
    return result


def adrenal_real(args) -> tuple[RealData, dict]:
    """AdrenalMNIST3D with hyperplasia cut to 1:``ADRENAL_RATIO`` in train (seeded), as the
    ``benchmarks.quality`` protocol's ``RealData``, and the record of which train volumes were kept."""
    splits = read_medmnist(Path(args.adrenal)).unit_float()
    x, y = splits["train"]
    n_keep = max(1, round((y != ADRENAL_MINORITY).sum() / ADRENAL_RATIO))
    train, kept = minority_subset(x, y, ADRENAL_MINORITY, n_keep, derive_seed(args.split_seed, "adrenal-cut"))
    counts = np.bincount(train[1])
    n_add = int(counts.max() - counts[ADRENAL_MINORITY])
    utility_kw = dict(minority=ADRENAL_MINORITY, num_classes=2, seed=derive_seed(args.split_seed, "quality-utility"),
                      epochs=args.utility_epochs, seeds=args.utility_seeds, bootstrap=args.bootstrap, n_add=n_add,
                      classifier=args.classifier)
    real = RealData(train, splits["val"], splits["test"], ADRENAL_MINORITY, ADRENAL_CLASSES, n_add, utility_kw,
                    kept)
    return real, {"kept_minority_train_indices": kept, "train_counts": counts.tolist(), "n_added": n_add}


def run_adrenal(families: list[str], args, device) -> dict:
    """The adrenal row: class-conditional 3D shapes, minority recall against random oversampling."""
    real, cut = adrenal_real(args)
    print(f"\n== adrenalmnist3d: hyperplasia cut to 1:{ADRENAL_RATIO} in train ({cut['train_counts']}); "
          f"adding {real.n_add} per arm")
    base = {} if args.train_only else real.utility(np.zeros((0, *real.train[0].shape[1:]), np.float32),
                                                   arms=tuple(args.baselines))
    ref_spec = base["none"].values["specificity"] if "none" in base else None
    result = {"dataset": "adrenalmnist3d", "minority": "hyperplasia", "cut": cut, "classifier": args.classifier,
              "reference_specificity": ref_spec, "baselines": {k: utility_row(v) for k, v in base.items()},
              "families": {}}
    spec = GeneratorSpec(3, 1, tuple(real.train[0].shape[2:]), 2)
    data = TrainingData(*real.train, class_names=ADRENAL_CLASSES, dataset_id="adrenalmnist3d-1to10")
    eval_args = argparse.Namespace(seed=args.validation_seed, validation_seeds=1, similarity_only=False)
    synthetic_arms = tuple(a for a in args.adrenal_arms if a in SYNTHETIC_ARMS)
    for fam in families:
        config, steps = family_budget(fam, args)
        for seed in args.seeds:
            run = argparse.Namespace(**{**vars(args), "seed": seed})
            key = f"adrenalmnist3d-1to10-split{args.split_seed}"
            model, train_s = trained_model(key, fam, get_generator(fam), spec, config, steps, data, run, device)
            model = with_sampling(model, fam, args)
            if args.train_only:
                continue
            t0 = time.perf_counter()
            syn = model.sample(real.n_add, ADRENAL_MINORITY, seed=derive_seed(seed, "quality3d-sample"),
                               batch_size=SAMPLE_BATCH)
            row = {"steps": steps, "train_seconds": train_s, "sample_seconds": time.perf_counter() - t0,
                   "config": model.config.model_dump(mode="json"),
                   **evaluate_cohort(real, syn, eval_args, ref_spec, arms=synthetic_arms,
                                     unflagged="synthetic_unflagged" in args.adrenal_arms)}
            result["families"].setdefault(fam, {})[str(seed)] = row
            rec = row["utility"]["synthetic"]["values"]["minority_recall"]
            print(f"  {fam} seed {seed}: S_FID {row['s_fid']['value']:.3f}, minority recall {rec:.3f}")
    return result


def _mean(vals: list[float | None]) -> float:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else float("nan")


def _cell(vals: list[float], cis: list | None = None) -> str:
    cis = [c for c in (cis or []) if c]
    ci = f" [{_mean([c[0] for c in cis]):.2f}, {_mean([c[1] for c in cis]):.2f}]" if cis else ""
    return f"{_mean(vals):.3f}{ci}"


def _control_cell(rows: list[dict]) -> str:
    """The shuffled-mask control over the seeds that ran it: mean ratio and how many failed."""
    ran = [x for x in rows if x.get("control_failed") is not None]
    if not ran:
        return "not run"
    return (f"{_cell([x['shuffled_control']['dice_ratio']['value'] for x in ran])} "
            f"({sum(x['control_failed'] for x in ran)}/{len(ran)} fail)")


def markdown_table(hippo: dict | None, adrenal: dict | None) -> str:
    """The RESULTS.md tables: each cell a mean over generator seeds; CIs the mean of the seeds' 95 %
    CIs over test volumes (paired bootstraps)."""
    lines = []
    if hippo:
        lines += ["| family | seeds | steps | DSC ratio (gate: trained on synthetic / on real) | mask fidelity "
                  "| real + synthetic gain | shuffled control | S_FID | coverage | copies | train min |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for fam, by_seed in hippo["families"].items():
            r = list(by_seed.values())
            seg = [x["segmentation"] for x in r]
            lines.append(
                f"| {fam} | {len(r)} | {r[0]['steps']} | {_cell([x['dice_ratio']['value'] for x in r], [x['dice_ratio']['ci'] for x in r])} "
                f"| {_cell([x['mask_fidelity'] for x in r])} "
                f"| {_cell([s['gain']['value'] for s in seg], [s['gain']['ci'] for s in seg])} "
                f"| {_control_cell(r)} "
                f"| {_cell([x['s_fid']['value'] for x in r])} | {_cell([x['coverage_ratio'] for x in r])} "
                f"| {_mean([x['flagged']['near_copy'] for x in r]):.1f} | {_mean([x['train_seconds'] for x in r]) / 60:.1f} |")
    if adrenal:
        keys = ("minority_recall", "recall_at_ref_specificity", "balanced_accuracy", "auroc")
        lines += ["", "| adrenal (hyperplasia 1:10) | seeds | S_FID | minority recall | recall at the none arm's "
                      "specificity | balanced accuracy | AUROC |", "|---|---|---|---|---|---|---|"]
        for arm, u in adrenal["baselines"].items():
            v, c = u["values"], u["ci"]
            lines.append(f"| {arm} | | | " + " | ".join(_cell([v.get(k)], [c.get(k)]) for k in keys) + " |")
        for fam, by_seed in adrenal["families"].items():
            r = list(by_seed.values())
            for arm in r[0]["utility"]:
                u = [x["utility"][arm] for x in r if arm in x["utility"]]
                name = fam if arm == "synthetic" else f"{fam}, {arm}"
                lines.append(f"| {name} | {len(u)} | {_cell([x['s_fid']['value'] for x in r])} | " + " | ".join(
                    _cell([a["values"].get(k) for a in u], [a["ci"].get(k) for a in u]) for k in keys) + " |")
    return "\n".join(lines)


def merged_runs(paths: list[Path]) -> tuple[dict | None, dict | None]:
    """The hippocampus and adrenal results of runs that each evaluated some generator seeds (for
    example one process per seed), as one result per dataset; the runs must share the split."""
    hippo, adrenal = None, None
    for path in paths:
        run = json.loads(path.read_text())
        for name, part in (("hippocampus", run.get("hippocampus")), ("adrenal", run.get("adrenal"))):
            if not part:
                continue
            into = hippo if name == "hippocampus" else adrenal
            if into is None:
                into = {**part, "families": {}}
                hippo, adrenal = (into, adrenal) if name == "hippocampus" else (hippo, into)
            elif name == "hippocampus" and into["split"] != part["split"]:
                raise InvalidInputError("the runs split the hippocampus differently", path=path)
            for fam, by_seed in part["families"].items():
                into["families"].setdefault(fam, {}).update(by_seed)
    return hippo, adrenal


def time_steps(families: list[str], k: int, device) -> dict[str, dict[str, float]]:
    """Seconds per training step of each family at the hippocampus size with ``CONFIG_3D``, on
    random volumes (the cost does not depend on the values), after one warm-up step."""
    rng = numpy_rng(0)
    x = rng.random((16, 1, *SIZE), dtype=np.float32)
    m = (rng.random((16, 1, *SIZE)) > 0.9).astype(np.uint8)
    data = TrainingData(x, np.zeros(16, np.int64), m, class_names=(CLASS,))
    out = {}
    for fam in families:
        family = get_generator(fam)
        model = family(GeneratorSpec(3, 1, SIZE, 1, mask_conditioned=True),
                       family.Config(**CONFIG_3D.get(fam, {})), device=device, seed=0)
        model.fit(data, 1)
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(data, 1 + k)
        wall, cpu = (time.perf_counter() - wall) / k, (time.process_time() - cpu) / k
        out[fam] = {"wall_s": wall, "cpu_s": cpu}
        print(f"  {fam}: {wall:.2f} s/step wall, {cpu:.2f} s/step of CPU time, {torch.get_num_threads()} thread(s) → "
              f"{int(3600 // cpu)} steps in 60 minutes of one core")
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="*", default=None, help="default: every family that builds in 3D; "
                                                                "none named: only the adrenal baselines")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="generator seeds")
    ap.add_argument("--steps", type=int, default=None, help="the same step count for every family (default STEPS_60MIN)")
    ap.add_argument("--new-masks", type=int, default=None, help="augmented masks to sample for (default: as many "
                                                                "as train masks)")
    ap.add_argument("--control-seeds", nargs="*", type=int, default=None,
                    help="generator seeds whose cohort also runs the shuffled-mask control (default: every seed)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--size", type=parse_size, default=SIZE, help="hippocampus grid, default 32x48x32")
    ap.add_argument("--val", type=float, default=0.15)
    ap.add_argument("--test", type=float, default=0.15)
    ap.add_argument("--validation-seed", type=int, default=0)
    ap.add_argument("--validation", default="{}", help="JSON ValidationConfig fields (budgets) for every report")
    ap.add_argument("--config", default="{}", help='JSON {"family": {fields}} on top of CONFIG_3D')
    ap.add_argument("--sampling", default="{}", help='JSON {"family": {fields}}: how the trained model draws '
                    f"({', '.join(SAMPLING_FIELDS)}), without retraining it")
    ap.add_argument("--no-adrenal", action="store_true")
    ap.add_argument("--no-hippocampus", action="store_true")
    ap.add_argument("--adrenal", default=str(ADRENAL))
    ap.add_argument("--baselines", nargs="*", default=["none", "random_oversampling"])
    ap.add_argument("--adrenal-arms", nargs="+", default=["synthetic"],
                    choices=(*SYNTHETIC_ARMS, "synthetic_unflagged"),
                    help="the utility arms of each adrenal cohort (3 classifiers each): the cohort alone by default")
    ap.add_argument("--classifier", default="monai_classifier", choices=CLASSIFIERS,
                    help="the adrenal row's utility classifier (validation.classifiers; resnet18 takes "
                         "hours per classifier at 28³ on a CPU)")
    ap.add_argument("--utility-epochs", type=int, default=None, help="default: the classifier's recipe")
    ap.add_argument("--utility-seeds", type=int, default=3, help="classifier seeds of the utility protocol")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--train-only", action="store_true", help="train and cache the generators, evaluate nothing")
    ap.add_argument("--time-steps", type=int, default=0, metavar="K", help="only time K steps per family")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="only print the table of these quality3d.json files' seeds together (runs split by seed)")
    ap.add_argument("--home", default=str(ROOT / "benchmarks" / "results" / "home"),
                    help="SYNTHCOHORT_HOME of the run (the imported dataset, encoders)")
    ap.add_argument("--models-dir", default=str(ROOT / "benchmarks" / "results" / "models"))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.merge:
        print(markdown_table(*merged_runs([Path(p) for p in args.merge])))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    device = select_device(args.device)
    families = three_d_families() if args.families is None else args.families  # `--families` alone: none
    if args.time_steps:
        time_steps(families, args.time_steps, device)
        return 0
    os.environ["SYNTHCOHORT_HOME"] = args.home  # validate_cohort reads the store of the settings' data root
    get_settings.cache_clear()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = ROOT / "benchmarks" / "results" / f"quality3d-{stamp}-{os.getpid()}"
    print(f"device {device}; families {families}; generator seeds {args.seeds}; "
          + (f"{args.steps} steps each" if args.steps else f"steps STEPS_60MIN {STEPS_60MIN}"))
    hippo = None if args.no_hippocampus else run_hippocampus(families, args, device, out_dir)
    adrenal = None if args.no_adrenal else run_adrenal(families, args, device)
    if args.train_only:
        print(f"\ntrained and cached in {args.models_dir}")
        return 0
    table = markdown_table(hippo, adrenal)
    print("\n" + table)
    atomic_write_text(out_dir / "quality3d.md", table + "\n")
    atomic_write_text(out_dir / "quality3d.json", json.dumps(
        {"device": str(device), "args": vars(args), "steps_60min": STEPS_60MIN, "seconds_per_step": SECONDS_PER_STEP,
         "hippocampus": hippo, "adrenal": adrenal}, indent=2, default=str))
    print(f"\nwrote {out_dir}/quality3d.json, quality3d.md and the reports")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
