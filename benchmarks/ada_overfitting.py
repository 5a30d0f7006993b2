"""ADA's overfitting heuristic on a tiny versus a large real set (Karras et al. 2020, §3).

Two StyleGAN2 runs with the same configuration and seed, differing only in how many real
images they see: ``--tiny`` images drawn (seeded) from PneumoniaMNIST's train split, and the
whole split (4,708 images). The discriminator memorises the tiny set, r_t = E[sign(D(x_real))]
climbs above the target 0.6 and the controller raises the augmentation probability p; on the
large set D cannot memorise and p should stay near 0. Prints p and r_t along the run, the mean
p over the last quarter of each run and their ratio, and writes the curves to
``benchmarks/results/`` as JSON and PNG.

``--ada-kimg`` sets how fast p may move (the paper's 500 kimg is far too slow for a CPU-sized
run; both arms use the same value, so the comparison stays fair).

    python -m benchmarks.ada_overfitting [--steps 1500] [--tiny 32] [--ada-kimg 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from synthcohort.core.atomic import atomic_write_bytes, atomic_write_text
from synthcohort.core.device import select_device
from synthcohort.core.seeding import numpy_rng
from synthcohort.generators.base import GeneratorSpec, TrainingData
from synthcohort.generators.registry import get_generator

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"
SMALL_NET = {"z_dim": 64, "w_dim": 64, "channel_base": 512, "channel_max": 64, "batch_size": 16}


def run_arm(images: np.ndarray, steps: int, config: dict, seed: int, device) -> list[dict[str, float]]:
    data = TrainingData(images, np.zeros(len(images), np.int64), class_names=("all",))
    family = get_generator("stylegan2")
    model = family(GeneratorSpec(2, 1, images.shape[-2:], 1), family.Config(**config), device=device, seed=seed)
    model.fit(data, steps)
    return [{"step": h["step"], "p": h["p"], "r_t": h["r_t"]} for h in model.history]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--tiny", type=int, default=32, help="images in the tiny set")
    ap.add_argument("--ada-kimg", type=float, default=10.0, help="kimg for p to move from 0 to 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    device = select_device(args.device)
    with np.load(args.data) as z:
        large = z["train_images"][:, None].astype(np.float32) / 255.0
    tiny = large[np.sort(numpy_rng(args.seed).choice(len(large), args.tiny, replace=False))]
    config = {**SMALL_NET, "ada_kimg": args.ada_kimg, "log_every": 10}
    print(f"device {device}; {args.steps} steps, batch {config['batch_size']}, ada_kimg {args.ada_kimg}; "
          f"tiny {len(tiny)} vs large {len(large)} PneumoniaMNIST train images")
    curves, seconds = {}, {}
    for arm, images in (("tiny", tiny), ("large", large)):
        t0 = time.perf_counter()
        curves[arm] = run_arm(images, args.steps, config, args.seed, device)
        seconds[arm] = time.perf_counter() - t0
    print(f"{'step':>6s} {'p tiny':>7s} {'r_t tiny':>9s} {'p large':>8s} {'r_t large':>10s}")
    every = max(1, len(curves["tiny"]) // 15)
    for a, b in list(zip(curves["tiny"], curves["large"]))[::every]:
        print(f"{a['step']:6d} {a['p']:7.3f} {a['r_t']:9.3f} {b['p']:8.3f} {b['r_t']:10.3f}")
    tail = {arm: float(np.mean([h["p"] for h in c[-max(1, len(c) // 4):]])) for arm, c in curves.items()}
    ratio = tail["tiny"] / max(tail["large"], 1e-3)
    print(f"mean p over the last quarter: tiny {tail['tiny']:.3f}, large {tail['large']:.3f} "
          f"(ratio {ratio:.1f}); {seconds['tiny']:.0f} s + {seconds['large']:.0f} s")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"ada_overfitting-{stamp}"
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"device": str(device), "args": {k: str(v) for k, v in vars(args).items()}, "config": config,
         "tail_mean_p": tail, "seconds": seconds, "curves": curves}, indent=2))
    atomic_write_bytes(out.with_suffix(".png"), _plot(curves))
    print(f"wrote {out}.json and .png")
    return 0


def _plot(curves: dict[str, list[dict[str, float]]]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(9, 3.2))
    for arm, c in curves.items():
        steps = [h["step"] for h in c]
        ax_p.plot(steps, [h["p"] for h in c], label=arm)
        ax_r.plot(steps, [h["r_t"] for h in c], label=arm)
    ax_r.axhline(0.6, color="grey", ls="--", lw=0.8)
    ax_p.set(xlabel="step", ylabel="augmentation p")
    ax_r.set(xlabel="step", ylabel="r_t = E[sign D(real)]")
    ax_p.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
