"""Does training with synthetic minority images find more rare cases than the classical remedies?

For each dataset row of issue 7 (BreastMNIST malignant, 2.7:1; PneumoniaMNIST normal cut to 9:1)
and each generator family: train class-conditionally on the real train split with the family's
small-data preset (``generators.presets``) for a fixed number of steps, sample as many minority
images as balance the classes, run the validation stage (S_FID with CI, coverage ratio, flags),
and run the validation stage's utility protocol (``validation.utility``: a fixed small CNN,
epoch picked on the real val split by balanced accuracy, scored on the real test split) for the
synthetic cohort, for the cohort without the samples the stage flagged, and once for the five
classical baselines, each over ``--seeds`` classifier seeds. Prints one table per dataset and
writes everything (with per-seed values and sample grids) to ``benchmarks/results/``.

Budget: steps, not minutes, so that a rerun with the same seeds reproduces the table on any
machine. ``STEPS_15MIN`` holds, per family, the steps that took 15 minutes on this project's
2-core CPU machine (measured; see ARCHITECTURE.md); ``--scale 0.33`` runs a 5-minute version.

Trained generators are kept in ``--models-dir`` (one checkpoint per dataset, family, seed, config
and step count). A run whose checkpoint exists skips training; a longer budget resumes from the
longest shorter one (resume is exact, ``generators.base.Generator.fit``), so ``--train-only``
runs on several processes (``--threads 1`` each on a 2-core machine) followed by one evaluating
run give the same table as one long run with the same thread count.

To compare generator variants (``--config``) without the utility protocol, ``--similarity-only
--validation-seeds 5`` reports S_FID at five validation seeds (other reference / hold-out splits
of the real class) and their median: at 147 images the spread between seeds (about ±0.1) is larger
than most differences between variants, so the median, not the gate's single seed, says which is better.

    python -m benchmarks.quality [--datasets breastmnist pneumoniamnist9to1] [--families ...]
                                 [--scale 1.0] [--seeds 3] [--device auto] [--threads N]
                                 [--train-only] [--similarity-only] [--validation-seeds K]
                                 [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from synthcohort.core.atomic import atomic_write_bytes, atomic_write_text
from synthcohort.core.device import select_device
from synthcohort.core.errors import InvalidInputError
from synthcohort.core.seeding import derive_seed, numpy_rng
from synthcohort.generators.base import Generator, GeneratorSpec, TrainingData
from synthcohort.generators.presets import SMALL_DATA
from synthcohort.generators.registry import available, get_generator
from synthcohort.generators.rejection import RejectionStats, rejection_sample
from synthcohort.imaging.readers import read_medmnist
from synthcohort.imaging.sample_files import encode_png
from synthcohort.validation.classifiers import CLASSIFIERS
from synthcohort.validation.config import MIN_SAMPLES, ValidationConfig
from synthcohort.validation.pipeline import RealSplit, validate_arrays
from synthcohort.validation.report import grid
from synthcohort.validation.utility import ARMS, METRICS, SYNTHETIC_ARMS, utility_experiment

ROOT = Path(__file__).resolve().parents[1]
MEDMNIST = ROOT.parent / "shared" / "data" / "medmnist"
DATASETS = {  # name → (file, minority class index, class names, minority train images kept or None for all)
    "breastmnist": ("breastmnist.npz", 0, ("malignant", "normal+benign"), None),
    "pneumoniamnist9to1": ("pneumoniamnist_imbalanced9to1.npz", 0, ("normal", "pneumonia"), None),
    "breastmnist1to10": ("breastmnist.npz", 0, ("malignant", "normal+benign"), 40),  # 399 : 40
    "pneumoniamnist1to50": ("pneumoniamnist.npz", 0, ("normal", "pneumonia"), 70),  # 3,494 : 70
}
SUBSET_SEED = 0  # the cut rows' minority subsets: one draw for every generator seed, recorded in the output
# 7.5 × the steps each preset reached in 2 minutes on 2 idle cores (generators.presets.EVIDENCE)
STEPS_15MIN = {"wgan-gp": 2250, "stylegan2": 1650, "dyngan": 6300, "diffusion": 3300}
BASELINES = tuple(a for a in ARMS if a not in SYNTHETIC_ARMS)


def utility_row(arm) -> dict:
    return {"values": arm.values, "ci": arm.ci, "per_seed": arm.per_seed, "n_added": arm.n_added}


@dataclass(frozen=True)
class RealData:
    """One dataset row of the issue, loaded once: its real splits, minority class and the utility
    protocol's keywords. The baselines and every cohort are scored through it, so all arms share
    the classifier seeds and the validation stage sees the same real split."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    minority: int
    class_names: tuple[str, ...]
    n_add: int  # minority images that balance the classes: what each arm adds
    utility_kw: dict
    kept_minority: list[int] | None  # train indices of the minority images a cut row keeps (file order)

    @classmethod
    def load(cls, name: str, args) -> RealData:
        file, minority, class_names, keep = DATASETS[name]
        splits = read_medmnist(MEDMNIST / file).unit_float()
        train, kept = minority_subset(*splits["train"], minority, keep, derive_seed(SUBSET_SEED, "quality-subset", name))
        counts = np.bincount(train[1])
        n_add = int(counts.max() - counts[minority])
        utility_kw = dict(minority=minority, num_classes=len(class_names), seed=derive_seed(args.seed, "quality-utility"),
                          epochs=args.utility_epochs, seeds=args.seeds, bootstrap=args.bootstrap, n_add=n_add,
                          classifier=args.classifier)
        return cls(train, splits["val"], splits["test"], minority, class_names, n_add, utility_kw, kept)

    def validate(self, images: np.ndarray, seed: int):
        """The validation stage's report on ``images`` (no utility protocol, no t-SNE) at ``seed``."""
        return validate_arrays(RealSplit(*self.train), RealSplit(*self.val), RealSplit(*self.test), images,
                               class_index=self.minority, class_names=self.class_names,
                               config=ValidationConfig(seed=seed, utility=False, tsne=False))

    def utility(self, images: np.ndarray, arms: tuple[str, ...], reference_specificity: float | None = None) -> dict:
        return utility_experiment(self.train, self.val, self.test, images, arms=arms,
                                  reference_specificity=reference_specificity, **self.utility_kw)


def minority_subset(x: np.ndarray, y: np.ndarray, minority: int, keep: int | None,
                    seed: int) -> tuple[tuple[np.ndarray, np.ndarray], list[int] | None]:
    """The train split with only ``keep`` minority images (a seeded draw, in file order), and the
    kept images' indices; every majority image stays. ``keep=None``: the split as it is."""
    if keep is None:
        return (x, y), None
    pool = np.flatnonzero(y == minority)
    kept = np.sort(numpy_rng(seed).choice(pool, keep, replace=False))
    rows = np.sort(np.concatenate([np.flatnonzero(y != minority), kept]))
    return (x[rows], y[rows]), kept.tolist()


def run_dataset(name: str, families: list[str], args, device, out_dir: Path) -> dict:
    real = RealData.load(name, args)
    x, y = real.train
    counts = np.bincount(y)
    print(f"\n== {name}: minority '{real.class_names[real.minority]}' {counts[real.minority]} vs {counts.max()} "
          f"train images; adding {real.n_add} per arm; "
          + ("no utility protocol" if args.similarity_only else f"utility over {args.seeds} seeds"))
    t0 = time.perf_counter()
    base = {} if args.train_only or args.similarity_only else real.utility(
        np.zeros((0, *x.shape[1:]), np.float32), arms=BASELINES)
    ref_spec = base["none"].values["specificity"] if "none" in base else None
    result = {"dataset": name, "minority": real.class_names[real.minority], "n_added": real.n_add,
              "train_counts": counts.tolist(), "kept_minority_indices": real.kept_minority,
              "classifier": args.classifier, "reference_specificity": ref_spec,
              "baselines": {k: utility_row(v) for k, v in base.items()},
              "baseline_seconds": time.perf_counter() - t0, "families": {}}
    spec = GeneratorSpec(2, 1, tuple(x.shape[-2:]), len(real.class_names))
    data = TrainingData(x, y, class_names=real.class_names, dataset_id=name)
    for fam in families:
        family = get_generator(fam)
        config = {**SMALL_DATA[fam], **json.loads(args.config).get(fam, {})}
        steps = max(1, round(STEPS_15MIN[fam] * args.scale)) if args.steps is None else args.steps
        model, train_s = trained_model(name, fam, family, spec, config, steps, data, args, device)
        if args.train_only:
            continue
        for row, syn, drs, sample_s in draw_cohorts(fam, model, real.n_add, real.minority, args):
            f = result["families"][row] = {
                "steps": steps, "train_seconds": train_s, "sample_seconds": sample_s,
                "config": model.config.model_dump(mode="json"), "rejection": drs.as_dict() if drs else None,
                **evaluate_cohort(real, syn, args, ref_spec)}
            atomic_write_bytes(out_dir / f"{name}-{row.replace(' ', '-')}-samples.png", encode_png(grid(syn[:64]), scale=2))
            if drs:
                print(f"  {row}: discriminator rejection sampling at percentile {drs.percentile:g}: accepted "
                      f"{drs.accepted} of {drs.candidates} draws ({drs.acceptance_rate:.0%})")
            print(f"  {row}: {steps} steps in {train_s / 60:.1f} min, {real.n_add} samples in {sample_s:.0f} s, "
                  f"S_FID {f['s_fid']['value']:.3f}, verdict {f['verdict']}")
            by_seed = f["s_fid"]["by_validation_seed"]
            if len(by_seed) > 1:
                print(f"  {row}: S_FID at validation seeds {min(map(int, by_seed))}–{max(map(int, by_seed))}: "
                      + " ".join(f"{v:.3f}" for v in by_seed.values()) + f" (median {f['s_fid']['median']:.3f})")
    if not args.train_only:
        if not args.similarity_only:
            result["beats_random_oversampling"] = beats_random_oversampling(result)
        print_table(result)
    return result


def evaluate_cohort(real: RealData, syn: np.ndarray, args, ref_spec: float | None, *,
                    arms: tuple[str, ...] = SYNTHETIC_ARMS, unflagged: bool = True) -> dict:
    """A cohort's part of its family row: the validation stage's report at ``--seed`` (S_FID with CI,
    coverage, entropy, flags), its S_FID at the further validation seeds, and (unless
    ``--similarity-only``) the utility protocol's synthetic ``arms`` (by default the cohort alone,
    with random oversampling, with a weighted loss) for the whole cohort, and (``unflagged``) the
    cohort alone for its unflagged part, which is what a user downloads and is judged by its own
    S_FID. ``ref_spec``: the no-augmentation arm's specificity, where recall is also compared."""
    report = real.validate(syn, args.seed)
    m = report.metrics
    # The gate is judged at --seed; further validation seeds (other reference/hold-out splits of
    # the real class) show how much of a difference between two cohorts is the estimate's noise.
    v_seeds = [args.seed + i for i in range(max(1, args.validation_seeds))]
    by_seed = [m["s_fid"].value] + [real.validate(syn, s).metrics["s_fid"].value for s in v_seeds[1:]]
    flagged = np.array(sorted(report.flagged), dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(syn)), flagged)
    scored = {} if args.similarity_only else real.utility(syn, arms=arms, reference_specificity=ref_spec)
    s_fid_kept = None
    if unflagged and len(flagged) and len(keep) >= MIN_SAMPLES and not args.similarity_only:
        scored["synthetic_unflagged"] = real.utility(syn[keep], arms=("synthetic",), reference_specificity=ref_spec)[
            "synthetic"]
        kept = real.validate(syn[keep], args.seed).metrics
        s_fid_kept = {"value": kept["s_fid"].value, "ci": kept["s_fid"].ci, "passed": kept["s_fid"].passed,
                      "n": int(len(keep)), "coverage_ratio": kept["coverage_ratio"].value}
    return {
        "s_fid": {"value": m["s_fid"].value, "ci": m["s_fid"].ci, "passed": m["s_fid"].passed,
                  "by_validation_seed": dict(zip(map(str, v_seeds), by_seed)), "median": float(np.median(by_seed))},
        "s_fid_unflagged": s_fid_kept,
        "coverage_ratio": m["coverage_ratio"].value, "entropy_ratio": m["entropy_ratio"].value,
        "flagged": {k: int(m[f"flagged_{k}"].value) for k in ("near_copy", "outlier", "broken")},
        "n_flagged": int(len(flagged)), "verdict": report.verdict,
        "utility": {k: utility_row(v) for k, v in scored.items()},
    }


def draw_cohorts(fam: str, model: Generator, n: int, minority: int,
                 args) -> Iterator[tuple[str, np.ndarray, RejectionStats | None, float]]:
    """(row name, cohort, rejection stats or None, seconds) for each cohort the run evaluates:
    ``n`` plain draws, and with ``--rejection P`` also ``n`` draws accepted by the family's
    discriminator (``generators.rejection``) where it has a logistic one."""
    seed = derive_seed(args.seed, "quality-sample")
    t0 = time.perf_counter()
    yield fam, model.sample(n, minority, seed=seed), None, time.perf_counter() - t0
    if args.rejection is None:
        return
    t0 = time.perf_counter()
    try:
        syn, drs = rejection_sample(model, n, minority, seed=seed, percentile=args.rejection)
    except InvalidInputError as e:
        print(f"  {fam}: {e.reason}; no rejection-sampled row")
        return
    yield f"{fam} DRS p{args.rejection:g}", syn, drs, time.perf_counter() - t0


def beats_random_oversampling(r: dict, threshold: float = ValidationConfig().similarity_threshold) -> list[str]:
    """The issue's acceptance per dataset: the cohorts (a family, or its unflagged part) whose
    family reaches S_FID ≥ the gate and whose arm beats random oversampling on minority recall at
    equal or better balanced accuracy (means over the classifier seeds). The unflagged part is
    judged by its own S_FID: it is what a user downloads."""
    ros = r["baselines"]["random_oversampling"]["values"]
    winners = []
    for fam, f in r["families"].items():
        for arm, u in f["utility"].items():
            s_fid = f.get("s_fid_unflagged") if arm == "synthetic_unflagged" else f["s_fid"]
            v = u["values"]
            if s_fid is None or s_fid["value"] < threshold:
                continue
            if v["minority_recall"] > ros["minority_recall"] and v["balanced_accuracy"] >= ros["balanced_accuracy"]:
                winners.append(family_label(fam, arm))
    return winners


def trained_model(dataset: str, fam: str, family, spec: GeneratorSpec, config: dict, steps: int,
                  data: TrainingData, args, device) -> tuple[Generator, float]:
    """The family trained for ``steps``: from the checkpoint cache when there, else trained
    (resuming from the longest cached shorter run of the same dataset, family, seed and config)
    and cached. Returns the model and the seconds of training this run spent."""
    cfg = family.Config(**config)
    key = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]
    stem = f"{dataset}-{fam}-seed{args.seed}-{key}"
    models = Path(args.models_dir)
    path = models / f"{stem}-{steps}.pt"
    if path.is_file():
        print(f"  {fam}: {steps} steps from the cache ({path.name})")
        return Generator.load(path, device=device), 0.0
    cached = ((p.stem.rsplit("-", 1)[1], p) for p in models.glob(f"{stem}-*.pt"))
    shorter = sorted((int(n), p) for n, p in cached if n.isdigit() and int(n) < steps)
    if shorter:
        model = Generator.load(shorter[-1][1], device=device)
        print(f"  {fam}: resuming at step {model.step} ({shorter[-1][1].name})")
    else:
        model = family(spec, cfg, device=device, seed=args.seed)
    partial = models / f"{stem}-partial.ckpt"  # a run stopped mid-way continues from here
    if partial.is_file():
        ckpt = torch.load(partial, map_location="cpu", weights_only=False)
        if model.step < int(ckpt["step"]) < steps:
            model.load_checkpoint(ckpt)
            print(f"  {fam}: continuing an interrupted run at step {model.step}")
    model.config.checkpoint_every = max(1, steps // 10)
    t0 = time.perf_counter()
    model.fit(data, steps, checkpoint_path=partial)
    train_s = time.perf_counter() - t0
    partial.replace(path)
    return model, train_s


ARM_LABELS = {"synthetic": "", "synthetic_ros": " + random oversampling", "synthetic_weighted": " + weighted loss",
              "synthetic_unflagged": " (unflagged only)"}


def family_label(row: str, arm: str) -> str:
    """A family row's name in the tables: the family and how its cohort was drawn, which part,
    and what it was combined with."""
    return row + ARM_LABELS[arm]


def _fmt(v: float, ci=None) -> str:
    return f"{v:.3f}" + (f" [{ci[0]:.2f},{ci[1]:.2f}]" if ci else "")


COLUMNS = {"minority_recall": "recall", "balanced_accuracy": "bal. acc", "auroc": "AUROC", "auprc": "AUPRC",
           "specificity": "spec.", "recall_at_ref_specificity": "recall@spec"}
WITH_CI = ("minority_recall", "balanced_accuracy")  # the other columns print their value alone


def _cells(u: dict | None) -> str:
    return " ".join(f"{_fmt(u['values'][k], u['ci'][k] if k in WITH_CI else None) if u else '':>{20 if k in WITH_CI else 11}s}"
                    for k in METRICS)


def print_table(r: dict) -> None:
    print(f"\n{r['dataset']} ({r['minority']}, {r.get('classifier', 'small_cnn')}): mean over seeds, 95% CI over test "
          f"images; recall@spec at the no-augmentation arm's specificity")
    head = f"{'method':40s} {'S_FID [95% CI]':20s} {'cov':>5s} {'copies':>6s} {'flagged':>7s} " \
        + " ".join(f"{COLUMNS[k]:>{20 if k in WITH_CI else 11}s}" for k in METRICS)
    print(head)
    print("-" * len(head))
    for arm, u in r["baselines"].items():
        print(f"{arm:40s} {'':20s} {'':>5s} {'':>6s} {'':>7s} " + _cells(u))
    for fam, f in r["families"].items():
        s = f["s_fid"]
        for arm, u in (f["utility"] or {"synthetic": None}).items():  # None: --similarity-only
            label = family_label(fam, arm)
            s_arm = f.get("s_fid_unflagged") if arm == "synthetic_unflagged" else s
            sim = _fmt(s_arm["value"], s_arm["ci"]) if s_arm else ""
            cov = s_arm["coverage_ratio"] if arm == "synthetic_unflagged" and s_arm else f["coverage_ratio"]
            print(f"{label:40s} {sim:20s} {cov:5.2f} {f['flagged']['near_copy']:6d} {f['n_flagged']:7d} " + _cells(u))
    if "beats_random_oversampling" in r:
        print(f"S_FID ≥ {ValidationConfig().similarity_threshold:.2f} and more minority recall than random oversampling "
              "at no lower balanced accuracy: "
              + (", ".join(r["beats_random_oversampling"]) or "none"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--families", nargs="*", default=None)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 15-minute step budget")
    ap.add_argument("--steps", type=int, default=None, help="the same step count for every family instead")
    ap.add_argument("--seeds", type=int, default=3, help="classifier seeds of the utility protocol")
    ap.add_argument("--classifier", default="resnet18", choices=CLASSIFIERS,
                    help="the utility protocol's classifier (validation.classifiers)")
    ap.add_argument("--utility-epochs", type=int, default=None, help="default: the classifier's recipe")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="{}", help='JSON {"family": {fields}} on top of the preset')
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (results depend on it on CPU)")
    ap.add_argument("--train-only", action="store_true", help="train and cache the generators, evaluate nothing")
    ap.add_argument("--similarity-only", action="store_true",
                    help="validate the cohorts but run no utility protocol (to compare generator variants quickly)")
    ap.add_argument("--validation-seeds", type=int, default=1,
                    help="also report S_FID at validation seeds --seed+1 … (the gate stays at --seed)")
    ap.add_argument("--rejection", type=float, default=None, metavar="PERCENTILE",
                    help="also evaluate each GAN's cohort drawn by discriminator rejection sampling, γ at this percentile")
    ap.add_argument("--models-dir", default=str(ROOT / "benchmarks" / "results" / "models"),
                    help="checkpoint cache of the trained generators")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    device = select_device(args.device)
    # the default: every family with a measured 15-minute budget (the 2D families; latent diffusion is for 3D)
    families = args.families or [f for f in available() if f in STEPS_15MIN or args.steps is not None]
    unbudgeted = [f for f in families if f not in STEPS_15MIN and args.steps is None]
    if unbudgeted:
        ap.error(f"--families {' '.join(unbudgeted)}: no 15-minute step budget measured (STEPS_15MIN); give --steps")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = ROOT / "benchmarks" / "results" / f"quality-{stamp}-{os.getpid()}"  # runs side by side: own folders
    print(f"device {device}; families {families}; step budget ×{args.scale} of STEPS_15MIN" if args.steps is None
          else f"device {device}; families {families}; {args.steps} steps each")
    results = [run_dataset(name, families, args, device, out_dir) for name in args.datasets]
    if args.train_only:
        print(f"\ntrained and cached in {args.models_dir}")
        return 0
    atomic_write_text(out_dir / "quality.json", json.dumps(
        {"device": str(device), "args": vars(args), "steps_15min": STEPS_15MIN, "results": results}, indent=2))
    print(f"\nwrote {out_dir}/quality.json and the sample grids")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
