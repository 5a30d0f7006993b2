"""The best the demo can do: a perfect generator's cohort (fresh phantoms of the same distribution)
through the validation gates, on the demo's phantom set, for several seeds.

Run: python -m benchmarks.demo_ceiling [--seeds 0,1,...] [--count 64] [--train 640,128] [--test 320,64]

Per seed: the phantom set of that seed, and ``count`` new lesion phantoms (seed 10000 + seed) as the
cohort; the validation without the utility experiment, Inception or t-SNE (none of them changes the
verdict). Prints the verdict, S_FID with its CI, the collapse gates and the per-sample flags, then
how many seeds pass: a trained generator can at best match that rate.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np


def main() -> None:
    import torch

    from synthcohort.imaging.phantoms import COUNTS_2D, make_phantoms
    from synthcohort.validation.config import ValidationConfig
    from synthcohort.validation.pipeline import RealSplit, validate_arrays

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default=",".join(map(str, range(10))))
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--train", default=None, help="majority,minority train images (default: the demo's)")
    p.add_argument("--test", default=None, help="majority,minority hold-out images (default: the demo's)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    counts = dict(COUNTS_2D)
    for split in ("train", "test"):
        if getattr(args, split):
            counts[split] = tuple(int(x) for x in getattr(args, split).split(","))

    def as_png(x: np.ndarray) -> np.ndarray:  # the demo's round trip through 8 bits
        return (np.round(x * 255) / 255).astype(np.float32)

    verdicts: Counter[str] = Counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        ph = make_phantoms(2, seed=seed, counts=counts)
        sp = {k: RealSplit(as_png(v.images), v.labels, None, v.sample_ids) for k, v in ph.items()}
        fresh = make_phantoms(2, seed=10_000 + seed, counts={"cohort": (0, args.count)})["cohort"].images
        rep = validate_arrays(sp["train"], sp["val"], sp["test"], as_png(fresh), class_index=1,
                              class_names=["normal", "lesion"],
                              config=ValidationConfig(utility=False, use_inception=False, tsne=False))
        m = rep.metrics
        flags = Counter(f["kind"] for s in rep.samples for f in s["flags"] if f["kind"] != "gate_not_decisive")
        verdicts[rep.verdict] += 1
        lo, hi = m["s_fid"].ci
        print(f"seed {seed}: {rep.verdict:12s} s_fid {m['s_fid'].value:.3f} [{lo:.3f}, {hi:.3f}] (N = {m['s_fid'].n}), "
              f"coverage_ratio {m['coverage_ratio'].value:.3f}, entropy_ratio {m['entropy_ratio'].value:.3f}, "
              f"flagged {dict(flags) or 'none'}", flush=True)
    print(", ".join(f"{v} {n}" for v, n in verdicts.most_common()))


if __name__ == "__main__":
    main()
