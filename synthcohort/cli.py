"""`synthcohort` command line. Each package contributes its sub-commands through a
``register(subparsers)`` function in its own ``cli`` module; this file only dispatches
and turns user-facing errors into one line on stderr with a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module

from synthcohort.core.errors import SynthcohortError
from synthcohort.core.version import __version__

# Modules whose ``register(subparsers)`` adds commands (each imports its heavy parts lazily).
COMMAND_MODULES = (
    "synthcohort.store.cli",  # datasets import/list/show
    "synthcohort.generators.cli",  # train, sample
    "synthcohort.validation.cli",  # validate
    "synthcohort.api.cli",  # serve, keys
    "synthcohort.workers.cli",  # worker
    "synthcohort.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthcohort", description="Validated synthetic cohorts of rare classes in medical imaging."
    )
    parser.add_argument("--version", action="version", version=f"synthcohort {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SynthcohortError as exc:
        print(f"synthcohort: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("synthcohort: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
