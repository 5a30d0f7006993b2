"""Does ``generators.configs.estimate_training_bytes`` cover what a training step really takes?

The API refuses a training request whose estimate exceeds ``SYNTHCOHORT_WORKER_MEMORY_BYTES``; an
estimate below the real need lets through a job that a worker then dies of. Each case (family,
2D/3D, size, batch, config) runs in its own process: build the generator on random data, note the
resident memory, train 2 steps (the first creates the optimiser state), and report the peak
resident memory above that mark (``ru_maxrss``). Each case runs at two batch sizes, so the memory
per sample (the slope, what a large batch is refused for) is checked apart from the fixed part.
Printed per case: measured, estimated and estimated ÷ measured for both batches and the slopes;
every ratio must be ≥ 1 (an upper estimate) and should stay within about 10×.

    python -m benchmarks.training_memory [--cases small|volumes|all] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

# (family, image size, config fields, two batch sizes): 2D at MedMNIST sizes and 64 px; 3D at the
# hippocampus benchmark's grid (32×48×32) and smaller, with and without the U-Net's attention levels.
SMALL = [
    ("wgan-gp", (28, 28), {}, (8, 32)),
    ("dyngan", (28, 28), {}, (8, 32)),
    ("stylegan2", (28, 28), {}, (4, 16)),
    ("diffusion", (28, 28), {}, (8, 32)),
    ("diffusion", (64, 64), {}, (4, 16)),
    ("latent-diffusion", (64, 64), {"ae_steps": 1}, (4, 16)),
    ("wgan-gp", (16, 24, 16), {}, (2, 8)),
    ("diffusion", (16, 16, 16), {}, (1, 4)),
    ("diffusion", (24, 32, 24), {}, (1, 2)),
    ("latent-diffusion", (16, 24, 16), {"ae_steps": 1}, (2, 8)),
]
VOLUMES = [
    ("diffusion", (32, 48, 32), {"attention_levels": (False, False)}, (1, 2)),
    ("wgan-gp", (32, 48, 32), {}, (2, 4)),
    ("latent-diffusion", (32, 48, 32), {"ae_steps": 1}, (2, 4)),
    ("latent-diffusion", (32, 48, 32), {"ae_steps": 1, "ae_attention": True}, (2, 4)),
]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(family: str, size: list[int], fields: dict, steps: int) -> None:
    """One case: the step's memory above the built model's, printed as JSON."""
    import numpy as np

    from synthcohort.generators.base import GeneratorSpec, TrainingData
    from synthcohort.generators.configs import estimate_training_bytes, parse_config
    from synthcohort.generators.registry import get_generator

    cfg = parse_config(family, {**fields, "log_every": 10**6})
    n = max(8, cfg.batch_size)
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, *size), dtype=np.float32)
    y = np.zeros(n, np.int64)
    model = get_generator(family)(GeneratorSpec(len(size), 1, tuple(size), 1), cfg, device="cpu", seed=0)
    data = TrainingData(x, y, class_names=("a",))
    base = _rss_bytes()
    model.fit(data, steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"measured": max(0, peak - base),
                      "estimated": estimate_training_bytes(family, cfg, channels=1, image_size=size)}), flush=True)


def run_case(family: str, size: tuple[int, ...], fields: dict, threads: int, steps: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-m", "benchmarks.training_memory", "--child",
                          json.dumps([family, list(size), fields]), "--steps", str(steps)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", choices=("small", "volumes", "all"), default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        family, size, fields = json.loads(args.child)
        child(family, size, fields, args.steps)
        return 0
    cases = {"small": SMALL, "volumes": VOLUMES, "all": SMALL + VOLUMES}[args.cases]
    print("| family | size | config | batch | measured MiB | estimated MiB | estimated ÷ measured |"
          " per-sample MiB, measured | per-sample MiB, estimated |\n|---|---|---|---|---|---|---|---|---|")
    worst = float("inf")
    for family, size, fields, batches in cases:
        runs = [run_case(family, size, {**fields, "batch_size": b}, args.threads, args.steps) for b in batches]
        label = f"| {family} | {'×'.join(map(str, size))} | {json.dumps(fields)} |"
        if any("error" in r for r in runs):
            print(f"{label} {batches} | failed: {[r.get('error') for r in runs]} | | | | |")
            worst = 0.0
            continue
        (m1, e1), (m2, e2) = ((r["measured"], r["estimated"]) for r in runs)
        slope_m, slope_e = (m2 - m1) / (batches[1] - batches[0]), (e2 - e1) / (batches[1] - batches[0])
        ratios = [e / max(m, 1) for m, e in ((m1, e1), (m2, e2))] + [slope_e / max(slope_m, 1)]
        worst = min(worst, *ratios)
        print(f"{label} {batches[0]}, {batches[1]} | {m1 / 2**20:.0f}, {m2 / 2**20:.0f} | {e1 / 2**20:.0f}, "
              f"{e2 / 2**20:.0f} | {ratios[0]:.2f}, {ratios[1]:.2f} | {slope_m / 2**20:.1f} | {slope_e / 2**20:.1f} |")
    print(f"\nlowest estimated ÷ measured (totals and per-sample slopes): {worst:.2f} (must be ≥ 1)")
    return 0 if worst >= 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
