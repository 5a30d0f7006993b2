"""How many planted copies of training patients does the validation stage's copy screening catch?

Real training images of the minority class are planted into a cohort under the perturbations a
generator that memorised them produces (exact, flipped, shifted by 1–3 px, rotated by 5°, with
Gaussian noise, with their intensity scaled, and blends of two), beside real images of other
patients that no part of the stage has seen: those measure the false-flag rate. The hold-out
(test split) is cut in two, seeded: one half calibrates the screening as the stage's hold-out,
the other half joins the cohort as unseen real patients. The val split is reported apart: in
MedMNIST it was cut from the same pool as train and can hold other images of the same patients.
The cohort goes through ``validate_arrays``, the API's own path, and a sample counts as
detected when it carries a ``near_copy`` flag; the report also says whether the nearest
training image it names is the planted one.

    python -m benchmarks.copy_detection [--datasets breastmnist pneumoniamnist hippocampus]
                                        [--per 40] [--seed 0]

Prints a table per data set and writes the rows to ``benchmarks/results/copy_detection.json``.
Goal (issue 21): recall ≥ 0.95 for exact, flip and shift copies at ≤ 2 % false flags.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import ndimage

from synthcohort.core.atomic import atomic_write_text
from synthcohort.core.settings import get_settings
from synthcohort.store.datasets import SplitArrays
from synthcohort.store.ingest import import_path
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.pipeline import validate_arrays

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
GOAL_RECALL, GOAL_FALSE = 0.95, 0.02
GOAL_KINDS = ("exact", "flip", "shift 1-3 px")

Perturb = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _shift(x: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift by 1–3 px (voxels) along every spatial axis, in a random direction; edges repeated."""
    offsets = [0] + [int(rng.integers(1, 4)) * int(rng.choice([-1, 1])) for _ in range(x.ndim - 1)]
    return ndimage.shift(x, offsets, order=0, mode="nearest")


def _rotate(x: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(ndimage.rotate(x, float(rng.choice([-5.0, 5.0])), axes=(-2, -1), reshape=False, order=1,
                                  mode="nearest"), 0, 1)


PERTURBATIONS: dict[str, Perturb] = {
    "exact": lambda x, o, r: x,
    "flip": lambda x, o, r: np.flip(x, axis=-1).copy(),
    "shift 1-3 px": _shift,
    "rotate 5°": _rotate,
    "noise σ 0.05": lambda x, o, r: np.clip(x + r.normal(0, 0.05, x.shape), 0, 1),
    "intensity ×0.8–1.2": lambda x, o, r: np.clip(x * r.uniform(0.8, 1.2), 0, 1),
    "flip + shift": lambda x, o, r: _shift(np.flip(x, axis=-1), o, r),
    "mix of two": lambda x, o, r: 0.5 * x + 0.5 * o,
}


def load(name: str, home: Path):
    """(train, val, test, minority class index, class names) of one data set, imported into a
    scratch data root through the store (so every image has its sample id)."""
    os.environ["SYNTHCOHORT_HOME"] = str(home)
    get_settings.cache_clear()
    if name == "hippocampus":
        version = import_path(DATA / "hippocampus", modality="MR", class_name="hippocampus", val=0.25, test=0.25)
    else:
        version = import_path(DATA / "medmnist" / f"{name}.npz")
    test = version.split("test", purpose="validation")  # the stage's calibration set, as in validate_cohort
    return version.split("train"), version.split("val"), test, 0, list(version.meta.classes)


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a proportion."""
    if n == 0:
        return (math.nan, math.nan)
    z, p = 1.96, k / n
    centre, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))


DETECTORS = {  # the stage's settings, and the pixel comparison without alignment it had before
    "aligned": {},
    "unaligned": {"copy_max_shift": 0, "copy_flips": False},
}


def run(name: str, per: int, seed: int, home: Path, detector: str) -> dict:
    train, val, test, minority, class_names = load(name, home)
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(train.labels == minority)
    planted, kinds, sources = [], [], []
    for kind, perturb in PERTURBATIONS.items():
        picks = rng.choice(pool, min(per, len(pool)), replace=False)
        for i in picks:
            other = train.images[rng.choice(pool)]
            planted.append(perturb(train.images[i], other, rng).astype(np.float32))
            kinds.append(kind)
            sources.append(train.sample_ids[i])
    half = rng.permutation(len(test.images)) < len(test.images) // 2
    calibration = SplitArrays(test.images[half], test.labels[half], None if test.masks is None else test.masks[half],
                              [sid for sid, h in zip(test.sample_ids, half) if h])
    unseen = test.images[~half].astype(np.float32)
    same_pool = val.images.astype(np.float32)
    cohort = np.concatenate([np.stack(planted), unseen, same_pool])
    config = ValidationConfig(seed=seed, utility=False, tsne=False, use_inception=False, bootstrap=0,
                              segmenter_epochs=1, **DETECTORS[detector])
    t0 = time.perf_counter()
    report = validate_arrays(train, val, calibration, cohort, class_index=minority, class_names=class_names,
                             config=config)
    seconds = time.perf_counter() - t0
    flagged = np.array([any(f["kind"] == "near_copy" for f in s["flags"]) for s in report.samples])
    named = [s["nearest_train"] for s in report.samples]
    rows = []
    for kind in PERTURBATIONS:
        idx = [j for j, k in enumerate(kinds) if k == kind]
        k = int(flagged[idx].sum())
        found = sum(1 for j in idx if sources[j] in (named[j].get("sample_id"), named[j].get("pixel_sample_id")))
        rows.append({"perturbation": kind, "n": len(idx), "detected": k, "recall": k / len(idx),
                     "ci": wilson(k, len(idx)), "source_named": found / len(idx)})

    def rate(part: np.ndarray) -> dict:
        k = int(part.sum())
        return {"n": len(part), "flagged": k, "rate": k / max(len(part), 1), "ci": wilson(k, len(part))}

    n_p, n_u = len(planted), len(unseen)
    return {"dataset": name, "detector": detector, "seed": seed, "per": per, "n_train": int(len(train.images)),
            "n_calibration": int(half.sum()), "rows": rows,
            "false_flags": rate(flagged[n_p:n_p + n_u]), "same_pool_flags": rate(flagged[n_p + n_u:]),
            "thresholds": report.details.get("thresholds"),
            "seconds": seconds, "copy_quantile": config.copy_quantile}


def print_table(res: dict) -> None:
    ff, sp = res["false_flags"], res["same_pool_flags"]
    print(f"\n{res['dataset']}, {res['detector']} pixel comparison: {res['n_train']} training images, calibration "
          f"on {res['n_calibration']} test images; {res['seconds']:.0f} s\n"
          f"false flags on {ff['n']} unseen test-split images: {ff['flagged']} ({ff['rate']:.1%}, "
          f"95 % CI {ff['ci'][0]:.1%}–{ff['ci'][1]:.1%}); on {sp['n']} val-split images (same pool as train): "
          f"{sp['flagged']} ({sp['rate']:.1%})")
    print(f"{'perturbation':<20} {'n':>4} {'recall':>7} {'95 % CI':>15} {'source named':>13}")
    for r in res["rows"]:
        print(f"{r['perturbation']:<20} {r['n']:>4} {r['recall']:>7.3f} {r['ci'][0]:>7.3f}–{r['ci'][1]:<7.3f}"
              f" {r['source_named']:>13.3f}")
    goal = [r for r in res["rows"] if r["perturbation"] in GOAL_KINDS]
    met = all(r["recall"] >= GOAL_RECALL for r in goal) and ff["rate"] <= GOAL_FALSE
    print(f"goal (recall ≥ {GOAL_RECALL} for {', '.join(GOAL_KINDS)} at ≤ {GOAL_FALSE:.0%} false flags): "
          f"{'met' if met else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["breastmnist", "pneumoniamnist", "hippocampus"])
    ap.add_argument("--per", type=int, default=40, help="planted copies per perturbation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "copy_detection.json")
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="copy-detection-") as home:
        for name in args.datasets:
            for detector in args.detectors:
                res = run(name, args.per, args.seed, Path(home), detector)
                print_table(res)
                results.append(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps({"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                            "argv": sys.argv[1:], "results": results}, indent=2))
    print(f"\nrows written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
