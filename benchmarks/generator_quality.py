"""Sample quality of each registered generator family for a fixed training time.

Each family trains class-conditionally on BreastMNIST's train split (all classes) for
``--minutes`` and then generates ``--n`` images of class 0 (malignant, the minority). The
score is the Fréchet distance on ``--pool``-pooled pixels (:func:`validation.frechet.pixel_frechet_distance`)
to the real *validation* images of that class, printed next to the untrained model's
distance and the real-train-vs-real-val distance (the floor a perfect generator would reach
with this few validation images). Results go to ``benchmarks/results/`` as JSON.

    python -m benchmarks.generator_quality [--minutes 2] [--families wgan-gp diffusion] [--device auto]
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
from synthcohort.core.device import select_device
from synthcohort.generators.base import GeneratorSpec, TrainingData
from synthcohort.generators.registry import available, get_generator
from synthcohort.validation.frechet import pixel_frechet_distance

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"
TARGET = 0  # malignant


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="training time per family")
    ap.add_argument("--families", nargs="*", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=256, help="generated images per family")
    ap.add_argument("--pool", type=int, default=4, help="pooled side length of the pixel features")
    ap.add_argument("--chunk", type=int, default=20, help="steps between time checks")
    ap.add_argument("--config", default="{}", help='JSON {"family": {config}} overrides')
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as each family finishes
    device = select_device(args.device)
    overrides = json.loads(args.config)
    with np.load(args.data) as z:
        train = TrainingData(z["train_images"][:, None].astype(np.float32) / 255.0,
                             z["train_labels"][:, 0].astype(np.int64), class_names=("malignant", "benign"))
        val = z["val_images"][:, None].astype(np.float32)[z["val_labels"][:, 0] == TARGET] / 255.0
    real_train = train.images[train.labels == TARGET]
    floor = pixel_frechet_distance(val, real_train, args.pool)
    spec = GeneratorSpec(2, 1, (28, 28), 2)
    print(f"device {device}; {args.minutes} min per family; FD on {args.pool}x{args.pool} pooled pixels "
          f"to {len(val)} real val images of class {TARGET}; real train vs val: {floor:.4f}")
    print(f"{'family':12s} {'steps':>7s} {'untrained':>10s} {'trained':>9s} {'ratio':>6s}")
    results = []
    for name in args.families or available():
        family = get_generator(name)
        model = family(spec, family.Config(**overrides.get(name, {})), device=device, seed=args.seed)
        untrained = pixel_frechet_distance(val, model.sample(args.n, TARGET, seed=args.seed + 1), args.pool)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.minutes * 60:
            model.fit(train, model.step + args.chunk)
        train_s = time.perf_counter() - t0
        trained = pixel_frechet_distance(val, model.sample(args.n, TARGET, seed=args.seed + 1), args.pool)
        print(f"{name:12s} {model.step:7d} {untrained:10.4f} {trained:9.4f} {trained / untrained:6.3f}")
        results.append({"family": name, "steps": model.step, "train_seconds": train_s,
                        "fd_untrained": untrained, "fd_trained": trained,
                        "config": model.config.model_dump(mode="json")})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"generator_quality-{stamp}.json"
    atomic_write_text(out, json.dumps({"device": str(device), "minutes": args.minutes, "pool": args.pool,
                                       "n": args.n, "seed": args.seed, "fd_real_train_vs_val": floor,
                                       "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
