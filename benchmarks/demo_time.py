"""The default `synthcohort demo`, as a user runs it, timed: its wall time, the verdict and each stage.

Run: python -m benchmarks.demo_time [--seeds 0,1,2] [--threads N] [-- extra demo arguments]

Each seed runs `python -m synthcohort demo --seed S` in its own fresh data root (embedded broker,
SQLite, CPU), so nothing is cached between runs. Prints, per seed, the wall time of the whole
command, the stages the demo reports (train, sample, validate), the verdict and whether an archive
was downloaded; and a reference (20 products of 1024² float64 matrices) timed in the same run, so
that times from a loaded or another machine can be compared (``ratio``). ``--threads`` sets
OMP_NUM_THREADS for the demo and its worker (default: unset, torch uses every core).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.validation_speed import reference_seconds

REPO = Path(__file__).resolve().parents[1]


def run_once(seed: int, threads: int | None, extra: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="sc-demo-bench-") as home:
        env = {**os.environ, "SYNTHCOHORT_HOME": home, "SYNTHCOHORT_DEVICE": "cpu"}
        for var in ("SYNTHCOHORT_DATABASE_URL", "SYNTHCOHORT_BROKER_URL", "SYNTHCOHORT_RESULT_BACKEND"):
            env.pop(var, None)
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "synthcohort", "demo", "--seed", str(seed), *extra],
                              cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
    out = proc.stdout
    verdict = re.search(r"^verdict\s+(\w+)", out, re.M)
    stages = re.search(r"^time\s+(.*?);", out, re.M)
    reasons = re.findall(r"^          - (.*)$", out, re.M)
    return {"seed": seed, "rc": proc.returncode, "wall_s": wall, "verdict": verdict.group(1) if verdict else None,
            "stages": stages.group(1) if stages else "", "downloaded": bool(re.search(r"^download\s+/", out, re.M)),
            "reasons": reasons, "tail": "" if proc.returncode == 0 else (out + proc.stderr)[-2000:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0", help="comma-separated demo seeds (default 0)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the demo (default: unset)")
    p.add_argument("extra", nargs="*", help="more `synthcohort demo` arguments (after --)")
    args = p.parse_args()
    ref = reference_seconds()
    print(f"reference (20 × 1024² float64 matmul): {ref:.3f} s", flush=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        r = run_once(seed, args.threads, args.extra)
        print(f"seed {seed}: {r['wall_s']:.0f} s (ratio to reference {r['wall_s'] / ref:.0f}), verdict {r['verdict']}, "
              f"archive {'downloaded' if r['downloaded'] else 'none'}; {r['stages']}", flush=True)
        for reason in r["reasons"]:
            print(f"    - {reason}")
        if r["rc"]:
            print(f"    exit status {r['rc']}:\n{r['tail']}")


if __name__ == "__main__":
    main()
