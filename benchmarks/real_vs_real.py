"""How often real data passes the validation stage's gates: real-vs-real splits of a minority class.

Splits as ``validation.calibration.real_vs_real_split``: half of the class's train+val images
leave the training split and play the synthetic cohort; the hold-out is the real test split.
A gate that real images fail often is too noisy at that size to judge a generator. Prints S_FID with its CI, the coverage
and entropy ratios, near-copy flags and the verdict per split, the pass rate of every gate, and
writes the rows to ``benchmarks/results/`` as JSON.

    python -m benchmarks.real_vs_real [--dataset breastmnist] [--class-index 0] [--splits 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from synthcohort.core.atomic import atomic_write_text
from synthcohort.imaging.readers import read_medmnist
from synthcohort.validation.calibration import real_vs_real_split
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.pipeline import validate_arrays

ROOT = Path(__file__).resolve().parents[1]
MEDMNIST = ROOT.parent / "shared" / "data" / "medmnist"
GATES = ("s_fid", "coverage_ratio", "entropy_ratio")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="breastmnist", help="a MedMNIST npz name in ../shared/data/medmnist")
    ap.add_argument("--class-index", type=int, default=0)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    path = MEDMNIST / f"{args.dataset}.npz"
    print(f"{args.dataset} class {args.class_index}: {args.splits} real-vs-real splits (utility off)")
    print(f"{'seed':>4s} {'N':>4s} {'S_FID':>6s} {'95% CI':>15s} {'cov':>5s} {'H':>5s} {'copies':>6s} verdict")
    splits = read_medmnist(path).unit_float()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.splits):
        t0 = time.perf_counter()
        rvr = real_vs_real_split(splits, args.class_index, seed=seed)
        cohort = rvr.cohort
        report = validate_arrays(rvr.train, rvr.val, rvr.test, cohort, class_index=args.class_index,
                                 config=ValidationConfig(seed=seed, utility=False, tsne=False))
        m = report.metrics
        row = {"seed": seed, "n_cohort": len(cohort), "n": int(report.details["reference"]["n"]),
               "verdict": report.verdict, "seconds": time.perf_counter() - t0,
               "flagged_near_copy": int(m["flagged_near_copy"].value),
               **{g: {"value": m[g].value, "ci": m[g].ci, "passed": m[g].passed} for g in GATES}}
        rows.append(row)
        ci = m["s_fid"].ci or (float("nan"), float("nan"))
        print(f"{seed:4d} {min(row['n'], len(cohort)):4d} {m['s_fid'].value:6.3f} [{ci[0]:6.3f}, {ci[1]:6.3f}] "
              f"{m['coverage_ratio'].value:5.2f} {m['entropy_ratio'].value:5.2f} {row['flagged_near_copy']:6d} {report.verdict}")
    rates = {g: sum(r[g]["passed"] for r in rows) / len(rows) for g in GATES}
    s = np.array([r["s_fid"]["value"] for r in rows])
    print("pass rate: " + ", ".join(f"{g} {v:.0%}" for g, v in rates.items())
          + f"; S_FID median {np.median(s):.3f}, range {s.min():.3f}–{s.max():.3f}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"real_vs_real-{args.dataset}-{stamp}.json"
    atomic_write_text(out, json.dumps({"dataset": args.dataset, "class_index": args.class_index,
                                       "pass_rate": rates, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
