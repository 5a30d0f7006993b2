"""Two workers on one machine: does giving each its share of the CPUs beat letting both take all?

The same fixed training workload (``--steps`` steps of one family with its small-data preset on
BreastMNIST 28×28, all classes) runs in separate processes, as workers do:

    (a) one process, torch threads = all CPUs of this process's affinity
    (b) two processes at once, each with the default for two workers on the host
        (``core.threads.default_threads(2)``: the CPUs divided by 2)
    (c) two processes at once, each with all CPUs' threads (what every torch process did before:
        oversubscribed)

Each process warms up, then waits until all are ready, so the timed parts start together; the
total images/s is all processes' images over the span from the first start to the last end.
Printed: the three totals and the ratios (b)/(a) and (c)/(a). On idle cores (b)/(a) should be
about 1 or more (two half-size jobs keep the cores as busy as one), (c)/(a) well below it.

    python -m benchmarks.worker_threads [--family diffusion] [--steps 40] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from synthcohort.core.threads import available_cpus, default_threads

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(family: str, steps: int, warmup: int, batch: int, threads: int) -> None:
    """One worker-like process: set the threads before any torch work, warm up, say ready,
    wait for 'go' on stdin, train ``steps`` steps, print the timing as JSON."""
    from synthcohort.core.threads import apply_torch_threads

    used = apply_torch_threads(threads)
    from benchmarks.generator_throughput import DATA, load_breast
    from synthcohort.generators.base import GeneratorSpec
    from synthcohort.generators.presets import SMALL_DATA
    from synthcohort.generators.registry import get_generator

    data = load_breast(DATA)
    cls = get_generator(family)
    cfg = cls.Config(**{**SMALL_DATA.get(family, {}), "batch_size": batch, "log_every": 10**6})
    model = cls(GeneratorSpec(2, 1, (28, 28), 2), cfg, device="cpu", seed=0)
    model.fit(data, warmup)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.time()
    model.fit(data, warmup + steps)
    t1 = time.time()
    print(json.dumps({"t0": t0, "t1": t1, "images": steps * batch, "threads": used}), flush=True)


def run_together(n_procs: int, threads: int, args: argparse.Namespace) -> tuple[float, list[int]]:
    """``n_procs`` children with ``threads`` each, timed parts started together; (total images/s, threads)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "benchmarks.worker_threads", "--child", "--family", args.family,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
           "--threads", str(threads)]
    procs = [subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(n_procs)]
    try:
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"child {p.pid} did not get ready: {line!r}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.stdout.readline()) for p in procs]
        for p in procs:
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    span = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    return sum(r["images"] for r in results) / span, [r["threads"] for r in results]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="diffusion")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.family, args.steps, args.warmup, args.batch, args.threads)
        return 0
    cpus, share = available_cpus(), default_threads(2)
    print(f"{args.family}, small-data preset, batch {args.batch}, {args.steps} steps per process, "
          f"BreastMNIST 28x28, {cpus} CPUs in this process's affinity; load average {os.getloadavg()[0]:.1f}")
    rows = [("(a) 1 process, all CPUs' threads", 1, cpus), ("(b) 2 processes, default share each", 2, share),
            ("(c) 2 processes, all CPUs' threads each", 2, cpus)]
    rates = {}
    for label, n, threads in rows:
        rate, used = run_together(n, threads, args)
        rates[label[:3]] = rate
        print(f"{label:42s} threads {','.join(map(str, used)):>5s}  total {rate:8.1f} images/s")
    print(f"(b)/(a) {rates['(b)'] / rates['(a)']:.2f}   (c)/(a) {rates['(c)'] / rates['(a)']:.2f}"
          f"   load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
