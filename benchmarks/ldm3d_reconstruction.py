"""Is latent diffusion's autoencoder what makes its 3D volumes look unreal to the validation stage?

Latent diffusion's hippocampus cohorts teach a segmenter almost as well as real pairs (DSC ratio
0.948 over 3 seeds) but sit far from real MR in the domain encoder's space (S_FID 0.03, about 114
outliers of 364, two seeds failing the bin-occupancy entropy gate; ``benchmarks/RESULTS.md``). A
sample can be no closer to real than the decoder lets it be, so this trains only the autoencoder
phase (``--ae-steps``, the family's config as ``benchmarks.quality3d`` uses it), reconstructs every
train volume through it (x̂ = D(μ(x)), no sampling), and sends the reconstructions, each with its own
mask, through ``validate_cohort`` like a cohort (``benchmarks.quality3d``'s split and settings, no
shuffled control). Copy screening will flag many of them: they are meant to be the train volumes.
What matters is S_FID, the entropy ratio and the outliers: if the reconstructions already fail
there, the autoencoder, not the latent denoiser, is the bottleneck. Printed: the reconstruction L1 on
train and test volumes and the cohort figures.

``--dataset adrenal`` asks the same of the adrenal row (AdrenalMNIST3D, hyperplasia cut to 1:10 as
``benchmarks.quality3d`` cuts it), whose cohorts came out empty: there the volumes are binary shapes
on about 2 % of the grid, so the figure that matters is the shape Dice between the thresholded
reconstruction and the volume (x̂ > 0.5 against x > 0.5), per class; the validation stage is not run.

    python -m benchmarks.ldm3d_reconstruction [--dataset hippocampus|adrenal] [--ae-steps 1500] [--seed 0]
        [--config JSON] [--threads 2] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

from benchmarks import quality3d
from benchmarks.quality3d import CLASS, HIPPOCAMPUS, ROOT, SIZE, Hippocampus, evaluate_hippocampus_cohort
from synthcohort.core.atomic import atomic_write_text
from synthcohort.core.settings import get_settings
from synthcohort.generators.base import GeneratorSpec, TrainingData
from synthcohort.generators.registry import get_generator
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.dice import dice_scores


@torch.no_grad()
def reconstruct(model, x: np.ndarray, batch: int = 8) -> np.ndarray:
    """D(μ(x)) for volumes in [0, 1], returned in [0, 1] (the family works in [−1, 1])."""
    out = []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch]).float() * 2 - 1
        mu, _ = model.ae.encode(xb)
        out.append(((model.decode_image(mu).clamp(-1, 1) + 1) / 2).numpy())
    return np.concatenate(out).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=("hippocampus", "adrenal"), default="hippocampus")
    ap.add_argument("--ae-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    ap.add_argument("--config", default="{}", help="JSON latent-diffusion config fields")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--home", default=str(ROOT / "benchmarks" / "results" / "home"))
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ["SYNTHCOHORT_HOME"] = args.home
    get_settings.cache_clear()
    family = get_generator("latent-diffusion")
    cfg = family.Config(**{"ae_steps": args.ae_steps, **json.loads(args.config)})
    if args.dataset == "adrenal":
        real_a, _ = quality3d.adrenal_real(quality3d.parser().parse_args([]))
        (train_x, train_y), (test_x, test_y) = real_a.train, real_a.test
        spec = GeneratorSpec(3, 1, tuple(train_x.shape[2:]), len(quality3d.ADRENAL_CLASSES))
        data = TrainingData(train_x, train_y, class_names=quality3d.ADRENAL_CLASSES, dataset_id="adrenalmnist3d-1to10")
    else:
        real = Hippocampus.load(HIPPOCAMPUS, split_seed=0, val=0.15, test=0.15, size=SIZE)
        train_x, test_x = real.train_x, real.test_x
        spec = GeneratorSpec(3, 1, SIZE, 1, mask_conditioned=True)
        data = TrainingData(train_x, np.zeros(len(train_x), np.int64), real.train_m, class_names=(CLASS,),
                            dataset_id=real.dataset.id)
    model = family(spec, cfg, device="cpu", seed=args.seed)
    t0 = time.perf_counter()
    model.fit(data, args.ae_steps)
    train_s = time.perf_counter() - t0
    model.ae.eval()
    rec_train, rec_test = reconstruct(model, train_x), reconstruct(model, test_x)
    l1 = {"train": float(np.abs(rec_train - train_x).mean()), "test": float(np.abs(rec_test - test_x).mean())}
    print(f"autoencoder: {args.ae_steps} steps in {train_s / 60:.1f} min; reconstruction L1 (images in [0, 1]) "
          f"train {l1['train']:.4f}, test {l1['test']:.4f}")
    record = {"args": vars(args), "config": cfg.model_dump(mode="json"), "train_seconds": train_s, "l1": l1}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = ROOT / "benchmarks" / "results" / f"ldm3d-reconstruction-{args.dataset}-{stamp}-{os.getpid()}"
    if args.dataset == "adrenal":
        shape = {}
        for split, rec, x, y in (("train", rec_train, train_x, train_y), ("test", rec_test, test_x, test_y)):
            for k, name in enumerate(quality3d.ADRENAL_CLASSES):
                sel = y == k
                d = dice_scores(rec[sel] > 0.5, x[sel] > 0.5)  # the shape Dice
                shape[f"{split}/{name}"] = {"n": int(sel.sum()), "shape_dice_mean": float(d.mean()),
                                            "shape_dice_min": float(d.min()),
                                            "foreground_real": float((x[sel] > 0.5).mean()),
                                            "foreground_reconstructed": float((rec[sel] > 0.5).mean()),
                                            "max_reconstructed_mean": float(rec[sel].reshape(sel.sum(), -1).max(1).mean())}
                r = shape[f"{split}/{name}"]
                print(f"  {split} {name} (n={r['n']}): shape Dice {r['shape_dice_mean']:.3f} (min "
                      f"{r['shape_dice_min']:.3f}); foreground {r['foreground_real']:.4f} real, "
                      f"{r['foreground_reconstructed']:.4f} reconstructed; mean max x̂ {r['max_reconstructed_mean']:.3f}")
        record["shape"] = shape
    else:
        vcfg = ValidationConfig(seed=0, utility=False)
        row = evaluate_hippocampus_cohort(real, rec_train, real.train_m, out_dir, cfg=vcfg, seed=args.seed,
                                          model_id=f"latent-diffusion-autoencoder-seed{args.seed}", control=False)
        print(f"reconstructions as a cohort: S_FID {row['s_fid']['value']:.3f} {row['s_fid']['ci']}, entropy ratio "
              f"{row['entropy_ratio']:.3f}, coverage {row['coverage_ratio']:.3f}, flags {row['flagged']}, "
              f"DSC ratio {row['dice_ratio']['value']:.3f}, mask fidelity {row['mask_fidelity']:.3f}, "
              f"verdict {row['verdict']}")
        record["cohort"] = row
    atomic_write_text(out_dir / "reconstruction.json", json.dumps(record, indent=2, default=str))
    print(f"wrote {out_dir}/reconstruction.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
