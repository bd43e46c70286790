"""`flexitts recipe demo`: rebuild the demo bundle from scratch (see `flexitts.recipe`)."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flexitts.recipe import STAGES

    parser = subparsers.add_parser("recipe", help="rebuild the demo bundle from scratch on a CPU (resumable)")
    parser.add_argument("name", choices=["demo"], help="which recipe")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--bundle", default=None, help="bundle folder to write (default: the package's demo bundle)")
    parser.add_argument("--hours", type=float, default=3.0, help="corpus size for the corpus stage")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flexitts.errors import ConfigError
    from flexitts.recipe import STAGES, run_recipe

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}: choose from {', '.join(STAGES)}")
    run_recipe(stages, args.bundle, args.hours)
    return 0
