"""``synthcohort train``, ``sample`` and ``models list/show``: thin wrappers over generators.training."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synthcohort.core.errors import InvalidInputError, NotFoundError


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
                    help="data-driven settings: auto (small-data for a small 2D class without --config; "
                         "a Bernoulli decoder for binary images), small-data, none")
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

    mo = subparsers.add_parser("models", help="trained models: list, show")
    mo_sub = mo.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    mo_sub.add_parser("list", help="every model: state (training, interrupted, complete, …), step, origin"
                      ).set_defaults(func=_models_list)
    show = mo_sub.add_parser("show", help="one model's record (model.json) as JSON")
    show.add_argument("model_id", help="mdl-...")
    show.set_defaults(func=_models_show)


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
    from synthcohort.core.signals import signal_name, signals_raise
    from synthcohort.core.threads import apply_torch_threads, torch_threads
    from synthcohort.generators.training import new_model_id, read_record, train_model

    apply_torch_threads(torch_threads())  # before any torch work (synthcohort.core.threads)

    model_id = args.model_id or new_model_id()  # known before training, so an interruption can name it
    bar = TqdmProgress(f"train {args.generator}")
    try:
        with signals_raise():
            record = train_model(args.dataset, args.class_name, args.generator, steps=args.steps, seed=args.seed,
                                 mask=args.mask, config=_parse_config(args.config), model_id=model_id,
                                 device=args.device, progress=bar, checkpoint_every=args.checkpoint_every,
                                 preset=args.preset)
    except SystemExit as exc:
        bar.close()
        why = signal_name(exc.code) or exc.code
        try:
            rec = read_record(model_id)
        except NotFoundError:
            print(f"synthcohort: interrupted by {why} before training started", file=sys.stderr)
            raise
        print(f"synthcohort: {model_id} interrupted by {why} at checkpoint step {rec.step} of {rec.steps}; "
              f"resume with the same command and --model-id {model_id}", file=sys.stderr)
        raise
    finally:
        bar.close()
    print(record.model_id)
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from synthcohort.generators.training import list_models

    records = list_models()
    if not records:
        print("no models")
        return 0
    print(f"{'model':<17} {'state':<12} {'step':>13}  {'generator':<10} {'dataset':<16} {'class':<16} created")
    for r in records:
        print(f"{r.model_id:<17} {r.state:<12} {f'{r.step}/{r.steps}':>13}  {r.generator:<10} {r.dataset_id:<16} "
              f"{r.class_name:<16} {r.created_at}")
    return 0


def _models_show(args: argparse.Namespace) -> int:
    from synthcohort.generators.training import read_record

    rec = read_record(args.model_id)
    print(json.dumps({**rec.model_dump(), "state": rec.state}, indent=2))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from synthcohort.core.progress import TqdmProgress
    from synthcohort.core.threads import apply_torch_threads, torch_threads
    from synthcohort.generators.training import sample_model

    apply_torch_threads(torch_threads())

    bar = TqdmProgress("sample")
    try:
        rows = sample_model(args.model, args.n, seed=args.seed, out_dir=args.out, class_name=args.class_name,
                            device=args.device, progress=bar)
    finally:
        bar.close()
    print(f"{len(rows)} samples in {args.out}")
    return 0
