"""``synthcohort datasets import|list|show|demo``.

``import`` and ``demo`` print only the dataset id on stdout (progress goes to stderr), so
``ID=$(synthcohort datasets import data/)`` works in scripts.
"""

from __future__ import annotations

import argparse
import json
import sys

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.progress import TqdmProgress


def _size_arg(text: str) -> tuple[int, ...]:
    from synthcohort.imaging.resizing import parse_size

    try:
        return parse_size(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("datasets", help="import real images and inspect dataset versions")
    sub = p.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    imp = sub.add_parser("import", help="import a MedMNIST npz, folder, NIfTI/DICOM set or archive")
    imp.add_argument("path", help="file, folder or .zip/.tar(.gz) archive")
    imp.add_argument("--name", help="a name for the dataset (default: the file or folder name)")
    imp.add_argument("--format", default="auto",
                     choices=["auto", "medmnist", "imagefolder", "csv", "nifti", "dicom"])
    imp.add_argument("--modality", help="CT, MR, XR, US, fundus or other (DICOM: read from the files)")
    imp.add_argument("--size", type=_size_arg, help="resample to e.g. 64x64 or 32x48x32 (3D default 32x48x32)")
    imp.add_argument("--normalise", help="divide:255 | window:400,40 | window:soft-tissue | percentile:1,99 | minmax")
    imp.add_argument("--classes", help="class names by label index, comma separated (e.g. malignant,benign)")
    imp.add_argument("--class-name", help="the class of a source without classes (default: all)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the stratified split (default 0)")
    imp.set_defaults(func=_import)

    ls = sub.add_parser("list", help="list dataset versions")
    ls.set_defaults(func=_list)

    show = sub.add_parser("show", help="show one dataset version")
    show.add_argument("dataset_id")
    show.add_argument("--json", action="store_true", help="print dataset.json")
    show.set_defaults(func=_show)

    demo = sub.add_parser("demo", help="import generated phantom images (no files needed)")
    demo.add_argument("--dims", type=int, choices=[2, 3], default=2)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--size", type=int, default=None, help="edge length (default 32)")
    demo.set_defaults(func=_demo)


def _import(args: argparse.Namespace) -> int:
    from synthcohort.store.ingest import import_path

    bar = TqdmProgress("import")
    try:
        version = import_path(
            args.path, name=args.name, format=args.format, modality=args.modality, size=args.size,
            normalise=args.normalise, class_name=args.class_name,
            classes=args.classes.split(",") if args.classes else None, seed=args.seed, progress=bar,
        )
    finally:
        bar.close()
    print(version.meta.id)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from synthcohort.store.ingest import import_demo

    print(import_demo(args.dims, seed=args.seed, size=args.size).meta.id)
    return 0


def _list(args: argparse.Namespace) -> int:
    from synthcohort.store.datasets import DatasetStore

    metas = DatasetStore().list()
    if not metas:
        print("no datasets", file=sys.stderr)
        return 0
    rows = [("ID", "NAME", "MODALITY", "SIZE", "CLASSES", "TRAIN", "VAL", "TEST", "CREATED")]
    for m in metas:
        n = {s: sum(m.counts.get(s, {}).values()) for s in ("train", "val", "test")}
        rows.append((m.id, m.name, m.modality, "x".join(map(str, m.image_size)), ",".join(m.classes),
                     str(n["train"]), str(n["val"]), str(n["test"]), m.created_at))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _show(args: argparse.Namespace) -> int:
    from synthcohort.store.datasets import DatasetStore

    version = DatasetStore().get(args.dataset_id)
    m = version.meta
    if args.json:
        print(json.dumps(m.model_dump(mode="json"), indent=2))
        return 0
    print(f"{m.id}  {m.name}")
    print(f"modality {m.modality}, {m.spatial_dims}D, {m.channels} channel(s), size {'x'.join(map(str, m.image_size))}"
          + (f", spacing {'x'.join(f'{v:g}' for v in m.spacing)} mm" if m.spacing else ""))
    print(f"normalisation {json.dumps(m.normalisation)}; split {m.split_origin}; masks {'yes' if m.has_masks else 'no'}")
    print(f"source {m.source.get('format')} {m.source.get('path')}")
    width = max(len(c) for c in m.classes)
    print(f"{'class'.ljust(width)}  " + "  ".join(s.rjust(6) for s in m.counts))
    for c in m.classes:
        print(f"{c.ljust(width)}  " + "  ".join(str(m.counts[s].get(c, 0)).rjust(6) for s in m.counts))
    return 0
