"""Time to validate 10,000 synthetic vs 10,000 real 2D images (encoder training excluded), per stage,
with the peak memory, to show the nearest-neighbour search is chunked (a dense 10k × 10k float64
distance matrix alone would be 800 MB; several are needed for PRDC and copy screening).

Run: python -m benchmarks.validation_speed [--n 10000] [--utility]
Prints each stage's seconds and its ratio to a reference (a fixed matrix product) timed in the
same run, so numbers from different machines can be compared.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SYNTHCOHORT_TEST_DATA", REPO.parent / "shared" / "data"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reference_seconds() -> float:
    """A fixed amount of dense float64 work: 20 products of 1024×1024 matrices."""
    import torch

    a = torch.randn(1024, 1024, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    for _ in range(20):
        a @ a
    return time.perf_counter() - t


def real_like(images: np.ndarray, n: int, seed: int, noise: float) -> np.ndarray:
    """n images drawn from ``images`` with flips, 90° rotations and noise (seeded)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(images), n)
    out = images[idx].copy()
    flip = rng.random(n) < 0.5
    out[flip] = out[flip][..., ::-1]
    for k in (1, 2, 3):
        sel = rng.integers(0, 4, n) == k
        out[sel] = np.rot90(out[sel], k, axes=(-2, -1))
    out += rng.normal(0, noise, out.shape).astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--utility", action="store_true", help="include the utility experiment (trains 6 classifiers)")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="synthcohort-bench-"))
    os.environ["SYNTHCOHORT_HOME"] = str(home)
    os.environ.setdefault("MPLBACKEND", "Agg")

    from synthcohort.validation.config import ValidationConfig
    from synthcohort.validation.encoder import domain_encoder
    from synthcohort.validation.pipeline import RealSplit, validate_arrays

    d = np.load(DATA / "medmnist" / "pneumoniamnist.npz")
    imgs = lambda k: d[f"{k}_images"][:, None].astype(np.float32) / 255.0  # noqa: E731
    labs = lambda k: d[f"{k}_labels"].reshape(-1).astype(np.int64)  # noqa: E731
    x, y = imgs("train"), labs("train")
    n = args.n
    real0 = real_like(x[y == 0], n, 1, 0.01)
    real1 = real_like(x[y == 1], n // 4, 2, 0.01)
    train = RealSplit(np.concatenate([real0, real1]), np.concatenate([np.zeros(n, np.int64), np.ones(n // 4, np.int64)]))
    synthetic = real_like(x[y == 0], n, 3, 0.05)
    val, test = RealSplit(imgs("val"), labs("val")), RealSplit(imgs("test"), labs("test"))
    print(f"real train {train.images.shape} (class 0: {n}), synthetic {synthetic.shape}, hold-out {test.images.shape}")

    ref = reference_seconds()
    print(f"reference (20 × 1024² float64 matmul): {ref:.3f} s")
    t = time.perf_counter()
    enc = domain_encoder(train.images, train.labels, seed=0, epochs=1)
    print(f"encoder training (excluded): {time.perf_counter() - t:.1f} s")

    rss0 = peak_rss_mb()
    cfg = ValidationConfig(utility=args.utility, utility_epochs=2)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        report = validate_arrays(train, val, test, synthetic, class_index=0, class_names=["normal", "pneumonia"],
                                 out_dir=Path(out), config=cfg, encoder=enc)
    total = time.perf_counter() - t
    rss1 = peak_rss_mb()
    print(f"\nvalidate {n} synthetic vs {len(train.images)} real: {total:.1f} s  (ratio to reference {total / ref:.1f})")
    for stage, sec in report.details["timings_s"].items():
        print(f"  {stage:16s} {sec:8.2f} s  {100 * sec / total:5.1f}%  ratio {sec / ref:7.1f}")
    dense = 8 * n * len(train.images) / 1024**2
    print(f"peak RSS {rss1:.0f} MB (before validation {rss0:.0f} MB); one dense {n}×{len(train.images)} float64 "
          f"distance matrix would be {dense:.0f} MB, the chunk limit is {cfg.nn_chunk_bytes / 1024**2:.0f} MB")
    print(f"verdict {report.verdict}; s_fid {report.metrics['s_fid'].value:.3f}; "
          f"flagged near_copy {report.metrics['flagged_near_copy'].value:.0f}")


if __name__ == "__main__":
    main()
