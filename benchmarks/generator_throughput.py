"""Training throughput of each registered generator family against a plain PyTorch loop.

For each family: ``fit`` for ``--steps`` generator steps on BreastMNIST (train split, all
classes) and report images/s (generator steps × batch / s). Next to it, measured in the same
run on the same device, a minimal hand-written loop over the *same networks* with the same
batch and loss (WGAN-GP: n_critic critic steps with the gradient penalty, then one generator
step; diffusion: ε-MSE at a random t). The ratio family / plain shows what the shared
machinery (batch sampling, EMA, logging, autocast) costs. Families without a plain reference
here (written by others) get images/s only.

Sampling (``--sample N`` images of class 0 from the trained model): images/s of each family's
``sample``; for diffusion, today's DDIM at the small-data preset's 25 steps against DPM-Solver++
at ``--dpm-steps``, the same model in the same run (ratio DPM / DDIM). Threads: ``--threads``
(default: this process's share, ``synthcohort.core.threads``), printed in the header.

    python -m benchmarks.generator_throughput [--steps 30] [--batch 32] [--device auto] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from synthcohort.core.device import select_device
from synthcohort.core.threads import apply_torch_threads, torch_threads
from synthcohort.generators.base import Generator, GeneratorSpec, TrainingData
from synthcohort.generators.presets import SMALL_DATA
from synthcohort.generators.registry import available, get_generator

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist" / "breastmnist.npz"


def load_breast(path: Path) -> TrainingData:
    with np.load(path) as z:
        return TrainingData(z["train_images"][:, None].astype(np.float32) / 255.0,
                            z["train_labels"][:, 0].astype(np.int64), class_names=("malignant", "benign"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_family(model: Generator, data: TrainingData, steps: int, warmup: int) -> float:
    """images/s of ``fit`` after ``warmup`` steps."""
    model.fit(data, warmup)
    _sync(model.device)
    t0 = time.perf_counter()
    model.fit(data, warmup + steps)
    _sync(model.device)
    return steps * model.config.batch_size / (time.perf_counter() - t0)


def plain_wgan_gp(model: Generator, x_all: torch.Tensor, y_all: torch.Tensor, steps: int) -> float:
    """Gulrajani et al. 2017 Algorithm 1 written out, on the family's own G and D."""
    G, D, c = model.G, model.D, model.config
    opt_g, opt_d = (torch.optim.Adam(n.parameters(), lr=c.lr, betas=tuple(c.betas)) for n in (G, D))
    dev, B = x_all.device, c.batch_size
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def step():
        for _ in range(c.n_critic):
            i = torch.randint(len(x_all), (B,), device=dev)
            x, y = x_all[i], y_all[i]
            with torch.no_grad(), torch.autocast(**amp):
                fake = G(torch.randn(B, c.z_dim, device=dev), y).float()
            eps = torch.rand(B, 1, 1, 1, device=dev)
            x_hat = (eps * x + (1 - eps) * fake).requires_grad_(True)
            with torch.autocast(**amp):
                d_real, d_fake, d_hat = D(x, y).float(), D(fake, y).float(), D(x_hat, y).float()
            (g,) = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
            loss_d = d_fake.mean() - d_real.mean() + c.gp_lambda * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        i = torch.randint(len(x_all), (B,), device=dev)
        with torch.autocast(**amp):
            loss_g = -D(G(torch.randn(B, c.z_dim, device=dev), y_all[i]), y_all[i]).float().mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return _time_plain(step, steps, B, dev)


def plain_diffusion(model: Generator, x_all: torch.Tensor, y_all: torch.Tensor, steps: int) -> float:
    """Ho et al. 2020 Algorithm 1 written out, on the family's own ε-network."""
    net, c = model.eps_model, model.config
    opt = torch.optim.Adam(net.parameters(), lr=c.lr)
    dev, B = x_all.device, c.batch_size
    abar = model.train_scheduler.alphas_cumprod.to(dev)
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def step():
        i = torch.randint(len(x_all), (B,), device=dev)
        x0, y = x_all[i], y_all[i]
        t = torch.randint(c.num_train_timesteps, (B,), device=dev)
        eps = torch.randn_like(x0)
        a = abar[t].view(-1, 1, 1, 1)
        with torch.autocast(**amp):
            loss = torch.nn.functional.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t, y).float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), c.grad_clip)
        opt.step()

    return _time_plain(step, steps, B, dev)


def _time_plain(step, steps: int, batch: int, device: torch.device, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


PLAIN = {"wgan-gp": plain_wgan_gp, "diffusion": plain_diffusion}


def time_sampling(model: Generator, n: int) -> float:
    """images/s of ``model.sample(n, 0)`` (after one warm-up batch)."""
    model.sample(min(n, 8), 0, seed=1)
    _sync(model.device)
    t0 = time.perf_counter()
    model.sample(n, 0, seed=0)
    _sync(model.device)
    return n / (time.perf_counter() - t0)


def sampling_rows(name: str, model: Generator, n: int, dpm_steps: int) -> list[tuple[str, float]]:
    """(label, images/s) of the family's sampling; diffusion: DDIM at the preset's steps, then DPM-Solver++."""
    if name != "diffusion":
        return [(name, time_sampling(model, n))]
    ddim_steps = SMALL_DATA["diffusion"]["sampling_steps"]
    model.config.sampler, model.config.sampling_steps = "ddim", ddim_steps
    rows = [(f"diffusion DDIM {ddim_steps}", time_sampling(model, n))]
    model.config.sampler, model.config.sampling_steps = "dpm_solver++", dpm_steps
    rows.append((f"diffusion DPM-Solver++ {dpm_steps}", time_sampling(model, n)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--families", nargs="*", default=None)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: this process's share)")
    ap.add_argument("--sample", type=int, default=64, help="images sampled per family (0: no sampling rows)")
    ap.add_argument("--dpm-steps", type=int, default=10, help="DPM-Solver++ steps to compare with DDIM")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as each family finishes
    threads = apply_torch_threads(args.threads or torch_threads())
    device = select_device(args.device)
    data = load_breast(args.data)
    spec = GeneratorSpec(2, 1, (28, 28), 2)
    x_all = torch.from_numpy(data.images).to(device) * 2 - 1
    y_all = torch.from_numpy(data.labels).to(device)
    print(f"device {device}, {threads} torch threads, batch {args.batch}, {args.steps} steps, BreastMNIST 28x28")
    print(f"{'family':12s} {'images/s':>10s} {'plain images/s':>15s} {'ratio':>7s}")
    trained = {}
    for name in args.families or available():
        family = get_generator(name)
        model = family(spec, family.Config(batch_size=args.batch, log_every=10**6), device=device, seed=0)
        trained[name] = model
        fam = time_family(model, data, args.steps, args.warmup)
        if name in PLAIN:
            ref_model = family(spec, family.Config(batch_size=args.batch), device=device, seed=0)
            plain = PLAIN[name](ref_model, x_all, y_all, args.steps)
            print(f"{name:12s} {fam:10.1f} {plain:15.1f} {fam / plain:7.2f}")
        else:
            print(f"{name:12s} {fam:10.1f} {'-':>15s} {'-':>7s}")
    if args.sample:
        print(f"\nsampling {args.sample} images (today's loop first for diffusion)")
        print(f"{'sampler':28s} {'images/s':>10s} {'ratio':>7s}")
        for name, model in trained.items():
            rows = sampling_rows(name, model, args.sample, args.dpm_steps)
            for label, rate in rows:
                print(f"{label:28s} {rate:10.2f} {rate / rows[0][1]:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
