"""`synthcohort validate`: validate a sample directory against a dataset version."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate", help="validate a synthetic cohort (similarity, Dice, mode collapse, copies, utility)",
        description="Validate the samples in DIR against a dataset version; writes report.json and report.html. "
        "Exit 0 for passed / needs_review, 1 for failed.",
    )
    p.add_argument("--samples", required=True, type=Path, metavar="DIR", help="sample directory (manifest.csv, images/)")
    p.add_argument("--dataset", required=True, metavar="ID", help="dataset version id")
    p.add_argument("--class", required=True, dest="class_name", metavar="NAME", help="class the samples belong to")
    p.add_argument("--out", type=Path, metavar="DIR", help="report directory (default: DIR/../report)")
    p.add_argument("--config", type=Path, metavar="JSON", help="ValidationConfig overrides as a JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthcohort.core.progress import TqdmProgress
    from synthcohort.core.threads import apply_torch_threads, torch_threads
    from synthcohort.validation.config import ValidationConfig
    from synthcohort.validation.pipeline import validate_cohort
    from synthcohort.validation.verdict import FAILED, metric_lines

    apply_torch_threads(torch_threads())  # before any torch work (synthcohort.core.threads)
    config = ValidationConfig.from_json_file(args.config) if args.config else ValidationConfig()
    out = args.out or args.samples.resolve().parent / "report"
    progress = None if args.no_progress else TqdmProgress("validate")
    report = validate_cohort(args.dataset, args.class_name, args.samples, out, config=config, progress=progress)
    print(f"verdict: {report.verdict}")
    for r in report.reasons:
        print(f"  - {r}")
    for line in metric_lines(report.to_json()["metrics"]):
        print(f"  {line}")
    print(f"report: {Path(out) / 'report.html'}")
    return 1 if report.verdict == FAILED else 0
