"""How often does a *perfect* cohort fall below the S_FID gate, and does a larger N help?

S_FID = FD(real reference, hold-out) / FD(synthetic, hold-out) (``validation.frechet``). When the
synthetic images come from the real distribution, both distances are pure finite-sample noise and
their ratio scatters around 1. This benchmark draws the three sets from one Gaussian whose
covariance has ``d`` equal eigenvalues (the class's effective dimension in the whitened feature
space) and runs the gate's own estimator (``relative_similarity``, its subsample draws included)
at several set sizes, printing the median, the 5–95 % range and how often S_FID < 0.90 (the
share of perfect cohorts that the point rule sends to a reviewer).

The effective dimension of real features is the participation ratio (Σλ)² / Σλ² of the class's
covariance in the gate's whitened features: ``--phantoms`` measures it on the demo's phantoms
(domain encoder as the validation stage trains it, lesion hold-out images).

    python -m benchmarks.sfid_noise [--dims 3 10 32] [--trials 200] [--phantoms 0,1,2]
"""

from __future__ import annotations

import argparse

import numpy as np

from synthcohort.core.seeding import numpy_rng
from synthcohort.validation.frechet import Whitening, relative_similarity

# (reference train images of the class, cohort, hold-out): the demo's sizes, then larger ones
SIZES = ((128, 64, 64), (128, 256, 64), (256, 1024, 256), (512, 512, 256), (512, 2048, 512))


def participation_ratio(features: np.ndarray) -> float:
    """(Σλ)² / Σλ² of the covariance: d for d equal eigenvalues, about 1 for one dominant one."""
    lam = np.clip(np.linalg.eigvalsh(np.atleast_2d(np.cov(features, rowvar=False))), 0, None)
    return float(lam.sum() ** 2 / (lam ** 2).sum())


def perfect_cohort_sfid(d: int, sizes: tuple[int, int, int], trials: int, seed: int) -> np.ndarray:
    """S_FID of ``trials`` perfect cohorts: reference, cohort and hold-out all from N(0, I_d)."""
    rng = numpy_rng(seed)
    n_ref, n_syn, n_hold = sizes
    return np.array([
        relative_similarity(rng.standard_normal((n_ref, d)), rng.standard_normal((n_syn, d)),
                            rng.standard_normal((n_hold, d)), seed=int(rng.integers(2**31)), bootstrap=0).s_fid
        for _ in range(trials)])


def phantom_participation(seeds: list[int]) -> list[float]:
    """The lesion class's participation ratio in the gate's whitened features, per phantom seed."""
    import torch

    from synthcohort.imaging.phantoms import make_phantoms
    from synthcohort.validation.config import MIN_SAMPLES
    from synthcohort.validation.encoder import domain_encoder
    from synthcohort.validation.reference import reference_indices, reference_seed

    torch.set_num_threads(1)
    out = []
    for seed in seeds:
        ph = make_phantoms(2, seed=seed)
        x, y = ph["train"].images, ph["train"].labels.reshape(-1)
        ref = reference_indices(y, 1, seed=reference_seed(0), min_size=MIN_SAMPLES)
        enc = domain_encoder(x, y, seed=seed, exclude=ref)
        white = Whitening.fit(np.delete(enc(x), ref, axis=0))
        hold = ph["test"].images[ph["test"].labels.reshape(-1) == 1]
        out.append(participation_ratio(white(enc(hold))))
        print(f"phantom seed {seed}: lesion hold-out participation ratio {out[-1]:.1f} of {white.dim} dims",
              flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", nargs="*", type=int, default=[3, 10, 32])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phantoms", default="", help="phantom seeds whose participation ratio to measure, e.g. 0,1,2")
    args = ap.parse_args(argv)
    if args.phantoms:
        phantom_participation([int(s) for s in args.phantoms.split(",")])
    print(f"{'d':>3} {'reference':>9} {'cohort':>6} {'hold-out':>8}  {'median':>6}  {'5-95 %':>13}  P(S_FID < 0.90)")
    for d in args.dims:
        for sizes in SIZES:
            s = perfect_cohort_sfid(d, sizes, args.trials, args.seed)
            lo, hi = np.percentile(s, [5, 95])
            print(f"{d:3d} {sizes[0]:9d} {sizes[1]:6d} {sizes[2]:8d}  {np.median(s):6.3f}  [{lo:5.3f}, {hi:5.3f}]  "
                  f"{np.mean(s < 0.9):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
