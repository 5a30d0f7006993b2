"""DDIM against DPM-Solver++ at several step counts: S_FID and sampling time of one trained model.

The diffusion family with its small-data preset is trained on BreastMNIST (all classes, as
``benchmarks/quality.py`` does, sharing its checkpoint cache), then for each ``sampler:steps`` of
``--grid`` the same seed draws the malignant cohort that balances the classes (252 images), which
the validation stage scores (S_FID, at validation seeds ``--seed`` … ``--seed + K − 1``; no utility
protocol, no Inception FID). Printed per row: seconds to sample, images/s, S_FID per validation seed
and their median. The default step count of a sampler is the fewest steps whose S_FID is within
the validation seeds' spread of the best row.

    python -m benchmarks.diffusion_samplers [--steps 3300] [--threads 1] [--validation-seeds 3]
        [--grid ddim:25,ddim:50,dpm_solver++:5,dpm_solver++:10,dpm_solver++:15,dpm_solver++:25]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from benchmarks.quality import DATASETS, ROOT, STEPS_15MIN, RealData, trained_model
from synthcohort.core.seeding import derive_seed
from synthcohort.generators.base import GeneratorSpec, TrainingData
from synthcohort.generators.presets import SMALL_DATA
from synthcohort.generators.registry import get_generator
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.pipeline import RealSplit, validate_arrays

GRID = "ddim:25,ddim:50,dpm_solver++:5,dpm_solver++:10,dpm_solver++:15,dpm_solver++:25"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="breastmnist", choices=list(DATASETS))
    ap.add_argument("--steps", type=int, default=STEPS_15MIN["diffusion"], help="training steps")
    ap.add_argument("--grid", default=GRID, help="comma-separated sampler:steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validation-seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--models-dir", default=str(ROOT / "benchmarks" / "results" / "models"))
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.utility_epochs, args.seeds, args.bootstrap = 1, 1, 200  # RealData's utility settings: unused here
    real = RealData.load(args.dataset, args)
    x, y = real.train
    spec = GeneratorSpec(2, 1, tuple(x.shape[-2:]), len(real.class_names))
    data = TrainingData(x, y, class_names=real.class_names, dataset_id=args.dataset)
    family = get_generator("diffusion")
    print(f"{args.dataset}, diffusion small-data preset, {args.steps} training steps, "
          f"{torch.get_num_threads()} torch threads; cohort {real.n_add} '{real.class_names[real.minority]}' images")
    model, train_s = trained_model(args.dataset, "diffusion", family, spec, dict(SMALL_DATA["diffusion"]),
                                   args.steps, data, args, torch.device("cpu"))
    if train_s:
        print(f"trained in {train_s / 60:.1f} min")
    v_seeds = [args.seed + i for i in range(max(1, args.validation_seeds))]
    sample_seed = derive_seed(args.seed, "quality-sample")
    print(f"{'sampler':14s} {'steps':>5s} {'sample s':>9s} {'images/s':>9s}  S_FID at validation seeds "
          f"{v_seeds[0]}–{v_seeds[-1]}  (median)")
    for item in args.grid.split(","):
        sampler, steps = item.rsplit(":", 1)
        model.config.sampler, model.config.sampling_steps = sampler, int(steps)
        t0 = time.perf_counter()
        syn = model.sample(real.n_add, real.minority, seed=sample_seed)
        sample_s = time.perf_counter() - t0
        s_fid = [validate_arrays(RealSplit(*real.train), RealSplit(*real.val), RealSplit(*real.test), syn,
                                 class_index=real.minority, class_names=real.class_names,
                                 config=ValidationConfig(seed=s, utility=False, tsne=False, use_inception=False)
                                 ).metrics["s_fid"].value for s in v_seeds]
        print(f"{sampler:14s} {int(steps):5d} {sample_s:9.1f} {len(syn) / sample_s:9.1f}  "
              + " ".join(f"{v:.3f}" for v in s_fid) + f"  ({float(np.median(s_fid)):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
