"""The quality benchmark over generator training seeds: does a family beat random oversampling
in most runs, or in one lucky one?

At 147 minority images a second training seed of the same recipe moves a GAN cohort's minority
recall by more than its margin over random oversampling, and one ``benchmarks/quality.py`` run
has one generator seed (its ``--seeds`` are classifier seeds). Run it once per ``--seed`` and
give this script the ``quality.json`` files: per dataset it prints, for every arm, the mean over
the runs of the per-run means, each run's S_FID, and in how many runs the family passed the
issue's line (S_FID ≥ the gate and more minority recall than random oversampling at no lower
balanced accuracy, judged within the run, whose baselines share its classifier seeds).

    python -m benchmarks.quality_seeds benchmarks/results/quality-*/quality.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.quality import METRICS, beats_random_oversampling, family_label


def summarise(runs: list[dict]) -> dict[str, dict]:
    """dataset → {"seeds", "arms": label → {metric: [per-run means]}, "s_fid": label → [...],
    "wins": label → runs passed}."""
    out: dict[str, dict] = {}
    for run in runs:
        seed = run["args"]["seed"]
        for r in run["results"]:
            d = out.setdefault(r["dataset"], {"seeds": [], "arms": {}, "s_fid": {}, "wins": {}})
            d["seeds"].append(seed)
            winners = set(beats_random_oversampling(r))
            for arm, u in r["baselines"].items():
                for k in METRICS:
                    d["arms"].setdefault(arm, {m: [] for m in METRICS})[k].append(u["values"].get(k, np.nan))
            for fam, f in r["families"].items():
                for arm, u in f["utility"].items():
                    label = family_label(fam, arm)
                    for k in METRICS:  # a run of an older protocol lacks the newer metrics: nan
                        d["arms"].setdefault(label, {m: [] for m in METRICS})[k].append(u["values"].get(k, np.nan))
                    s = (f.get("s_fid_unflagged") or {}) if arm == "synthetic_unflagged" else f["s_fid"]
                    d["s_fid"].setdefault(label, []).append(s.get("value", float("nan")))
                    d["wins"][label] = d["wins"].get(label, 0) + int(label in winners)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="quality.json files, one per --seed")
    args = ap.parse_args(argv)
    runs = []
    for p in args.results:
        try:
            runs.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            print(f"{p}: cannot read a quality.json ({e})", file=sys.stderr)
            return 2
    for name, d in summarise(runs).items():
        n = len(d["seeds"])
        print(f"\n{name}: {n} runs (generator seeds {', '.join(map(str, d['seeds']))}); mean over runs of the "
              "per-run means, each over its classifier seeds")
        head = f"{'method':30s} " + " ".join(f"{k:>18s}" for k in METRICS) + f" {'S_FID per run':>24s} {'passed':>7s}"
        print(head + "\n" + "-" * len(head))
        for label, vals in d["arms"].items():
            cells = " ".join(f"{np.nanmean(vals[k]):8.3f} ±{np.nanstd(vals[k]):.3f}   " if np.isfinite(vals[k]).any()
                             else f"{'—':>18s}" for k in METRICS)
            s = d["s_fid"].get(label)
            s_txt = " ".join(f"{v:.3f}" for v in s) if s else ""
            won = f"{d['wins'][label]}/{len(s)}" if s else ""
            print(f"{label:30s} {cells} {s_txt:>24s} {won:>7s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
