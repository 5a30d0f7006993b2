"""``synthcohort train`` and ``synthcohort sample``: thin wrappers over generators.training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from synthcohort.core.errors import InvalidInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    from synthcohort.generators.presets import PRESET_NAMES
    from synthcohort.generators.registry import available

    tr = subparsers.add_parser("train", help="train a generator on a dataset version; prints the model id")
    tr.add_argument("--dataset", required=True, help="dataset version id (ds-...)")
    tr.add_argument("--class", dest="class_name", required=True, help="target (minority) class name")
    tr.add_argument("--generator", required=True, choices=available(), help="generator family")
    tr.add_argument("--steps", type=int, default=2000, help="generator steps (default 2000)")
    tr.add_argument("--seed", type=int, default=0, help="seed of initialisation and training (default 0)")
    tr.add_argument("--mask", action="store_true", help="condition on the dataset's masks")
    tr.add_argument("--config", help='family hyperparameters as JSON, e.g. \'{"batch_size": 16}\'')
    tr.add_argument("--preset", default="auto", choices=PRESET_NAMES,
                    help="small-data settings: auto (for a small 2D class without --config), small-data, none")
    tr.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default: settings)")
    tr.add_argument("--model-id", help="continue this model (mdl-...) from its checkpoint, or name a new one")
    tr.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    tr.set_defaults(func=_train)

    sa = subparsers.add_parser("sample", help="write N samples of a trained model as a sample directory")
    sa.add_argument("--model", required=True, help="model id (mdl-...)")
    sa.add_argument("--n", type=int, required=True, help="number of samples")
    sa.add_argument("--seed", type=int, required=True, help="sampling seed (same seed → same images)")
    sa.add_argument("--out", type=Path, required=True, help="output directory")
    sa.add_argument("--class", dest="class_name", help="class to sample (default: the model's target class)")
    sa.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default: settings)")
    sa.set_defaults(func=_sample)


def _parse_config(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"not valid JSON ({exc.msg} at position {exc.pos})", field="config") from None
    if not isinstance(config, dict):
        raise InvalidInputError("must be a JSON object", field="config")
    return config


def _train(args: argparse.Namespace) -> int:
    from synthcohort.core.progress import TqdmProgress
    from synthcohort.generators.training import train_model

    bar = TqdmProgress(f"train {args.generator}")
    try:
        record = train_model(args.dataset, args.class_name, args.generator, steps=args.steps, seed=args.seed,
                             mask=args.mask, config=_parse_config(args.config), model_id=args.model_id,
                             device=args.device, progress=bar, checkpoint_every=args.checkpoint_every,
                             preset=args.preset)
    finally:
        bar.close()
    print(record.model_id)
    return 0


def _sample(args: argparse.Namespace) -> int:
    from synthcohort.core.progress import TqdmProgress
    from synthcohort.generators.training import sample_model

    bar = TqdmProgress("sample")
    try:
        rows = sample_model(args.model, args.n, seed=args.seed, out_dir=args.out, class_name=args.class_name,
                            device=args.device, progress=bar)
    finally:
        bar.close()
    print(f"{len(rows)} samples in {args.out}")
    return 0
