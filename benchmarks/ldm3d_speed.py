"""Latent against pixel-space 3D diffusion at equal wall time: seconds per training step and per
sampled volume, on a stored 3D dataset with masks (MSD hippocampus at 32×48×32), mask-conditioned.

Each phase trains for the same ``--seconds`` of wall time after one warm-up step, one after the
other in this process: the pixel-space ``diffusion`` family (the reference), then ``latent-diffusion``'s
autoencoder phase, then its latent denoiser phase (the switch made at the step the autoencoder
reached). Then each draws ``--volumes`` volumes with ``--sample-steps`` DDIM steps. Both use their
family's default widths and the same batch, except that the pixel-space reference runs without
self-attention: its default attention at the second level is over 16·24·16 = 6144 voxels, whose
attention matrices took the process past 14 GB at batch 4 (killed by the OOM killer on a 23 GB
machine), while the latent denoiser's attention is over 4·6·4 = 96 cells. Runs beside other work
disturb the wall seconds; the CPU seconds (one thread) and their ratio much less.

    SYNTHCOHORT_HOME=… python -m benchmarks.ldm3d_speed --dataset ds-… [--seconds 60] [--threads 1]

Measured 2026-12-06 (MSD hippocampus imported at 32×48×32, 182 train volumes, batch 4, one thread,
2 CPU cores shared with four other jobs at load 5–8, so wall ≈ 2 × CPU; ``--seconds 60 --min-steps 2
--sample-steps 10 --volumes 1``), CPU seconds (wall seconds):

    phase                 per step          per volume (10 DDIM steps)   pixel / this (CPU)
    pixel diffusion       19.0 (40.5)       17.8 (40.6)                  1
    latent: autoencoder    1.23 (2.50)      -                            15 per step
    latent: denoiser       0.26 (0.53)       0.40 (1.00)                 74 per step, 45 per volume

The pixel reference's MONAI U-Net keeps its self-attention mid block at 16·24·16 voxels even with
``attention_levels`` off: without that block one forward + backward at batch 4 took 7.2 CPU s instead
of 17.9, and the process's RSS reached about 6 GB with it. Since 2026-12-07 that attention is fused
(``generators.nets.denoiser_unet``): a pixel step at batch 2 takes 4.66 CPU s instead of 12.27 (one
thread, idle machine, ``benchmarks.quality3d --time-steps 10``), so the figures above overstate the
pixel family's cost about 2.6-fold; this benchmark has not been rerun since.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from synthcohort.core.device import select_device
from synthcohort.generators.base import Generator, GeneratorSpec, TrainingData
from synthcohort.generators.registry import get_generator
from synthcohort.store.datasets import DatasetStore


def timed_steps(model: Generator, data: TrainingData, seconds: float, min_steps: int) -> dict[str, float]:
    """Steps, wall and CPU seconds per step of ``fit``, one step at a time for ``seconds`` (and at
    least ``min_steps``), after one warm-up step. With one thread, CPU time is the compute the step
    needs, which other processes on the machine disturb less than the wall time."""
    model.fit(data, model.step + 1)
    start, t0, c0 = model.step, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds or model.step - start < min_steps:
        model.fit(data, model.step + 1)
    n = model.step - start
    return {"steps": n, "s_per_step": (time.perf_counter() - t0) / n, "cpu_s_per_step": (time.process_time() - c0) / n}


def timed_sampling(model: Generator, masks: np.ndarray, class_index: int) -> tuple[dict[str, float], np.ndarray]:
    """Wall and CPU seconds per volume of one seeded draw of ``len(masks)`` volumes, and the volumes."""
    t0, c0 = time.perf_counter(), time.process_time()
    x = model.sample(len(masks), class_index, seed=0, masks=masks, batch_size=len(masks))
    return {"s_per_volume": (time.perf_counter() - t0) / len(masks),
            "cpu_s_per_volume": (time.process_time() - c0) / len(masks)}, x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="a stored 3D dataset version with masks")
    ap.add_argument("--class-name", default=None, help="default: the first class")
    ap.add_argument("--seconds", type=float, default=60.0, help="wall time per training phase")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--sample-steps", type=int, default=10, help="DDIM steps of both families")
    ap.add_argument("--volumes", type=int, default=1, help="volumes drawn by each family")
    ap.add_argument("--min-steps", type=int, default=2, help="timed steps per phase at least")
    ap.add_argument("--pixel-config", default='{"attention_levels": [false, false]}',
                    help="JSON fields over the diffusion family's defaults (default: no attention, see above)")
    ap.add_argument("--latent-config", default="{}", help="JSON fields over latent-diffusion's defaults")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    ds = DatasetStore().get(args.dataset)
    meta, train = ds.meta, ds.split("train")
    if meta.spatial_dims != 3 or train.masks is None:
        raise SystemExit(f"{args.dataset} is not a 3D dataset with masks")
    ci = ds.class_index(args.class_name or meta.classes[0])
    data = TrainingData(train.images, train.labels, train.masks, class_names=tuple(meta.classes))
    spec = GeneratorSpec(3, meta.channels, tuple(int(s) for s in meta.image_size), len(meta.classes),
                         mask_conditioned=True)
    masks = train.masks[train.labels == ci][:args.volumes]
    common = dict(batch_size=args.batch, sampling_steps=args.sample_steps, log_every=10**6)
    print(f"device {device}, {torch.get_num_threads()} thread(s); {args.dataset} {meta.image_size}, "
          f"{len(train.images)} train volumes; batch {args.batch}; {args.seconds:.0f} s per phase; "
          f"{args.sample_steps} DDIM steps")

    pixel_family, latent_family = get_generator("diffusion"), get_generator("latent-diffusion")
    pixel = pixel_family(spec, pixel_family.Config(**{**common, **json.loads(args.pixel_config)}),
                         device=device, seed=0)
    latent = latent_family(spec, latent_family.Config(**{**common, **json.loads(args.latent_config),
                                                         "ae_steps": 10**7}), device=device, seed=0)
    rows = {"pixel diffusion": timed_steps(pixel, data, args.seconds, args.min_steps),
            "latent: autoencoder": timed_steps(latent, data, args.seconds, args.min_steps)}
    rows["latent: autoencoder"]["recon_l1"] = float(latent.history[-1]["recon_l1"])
    latent.config.ae_steps = latent.step  # switch to the diffusion phase where the autoencoder got to
    rows["latent: denoiser"] = timed_steps(latent, data, args.seconds, args.min_steps)
    rows["latent: denoiser"]["scale"] = float(latent.scale)
    sampled, x_pixel = timed_sampling(pixel, masks, ci)
    rows["pixel diffusion"].update(sampled)
    sampled, x_latent = timed_sampling(latent, masks, ci)
    rows["latent: denoiser"].update(sampled)

    ref = rows["pixel diffusion"]
    print(f"{'phase':20s} {'steps':>5s} {'s/step':>8s} {'cpu s/step':>10s} {'ratio':>6s} "
          f"{'s/volume':>9s} {'cpu s/vol':>9s} {'ratio':>6s}   (ratio: pixel / this, CPU time)")
    for name, r in rows.items():
        line = (f"{name:20s} {r['steps']:5d} {r['s_per_step']:8.3f} {r['cpu_s_per_step']:10.3f} "
                f"{ref['cpu_s_per_step'] / r['cpu_s_per_step']:6.1f} ")
        if "s_per_volume" in r:
            line += (f"{r['s_per_volume']:9.2f} {r['cpu_s_per_volume']:9.2f} "
                     f"{ref['cpu_s_per_volume'] / r['cpu_s_per_volume']:6.1f}")
        print(line)
    for name, x in (("pixel", x_pixel), ("latent", x_latent)):
        print(f"{name} samples: shape {x.shape}, range [{x.min():.3f}, {x.max():.3f}]")
    print(json.dumps({"threads": torch.get_num_threads(), "batch": args.batch, "seconds": args.seconds,
                      "sample_steps": args.sample_steps, "pixel_config": pixel.config.model_dump(mode="json"),
                      "latent_config": latent.config.model_dump(mode="json"), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
