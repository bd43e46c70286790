"""Entry point of the `flexitts` console script and `python -m flexitts`.

Subcommand modules are imported here only to add their argument parsers; they defer heavy imports
(torch, models) to the moment they run, so `flexitts --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from flexitts.errors import FlexiTTSError

# Modules under flexitts.cli that each define `register(subparsers)`.
SUBCOMMAND_MODULES = ("app", "bench", "codec", "corpus", "data", "eval", "recipe", "synthesize", "train")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand registered."""
    from flexitts import __version__

    parser = argparse.ArgumentParser(
        prog="flexitts",
        description="FlexiTTS: text-to-speech on dynamic-rate speech tokens.",
    )
    parser.add_argument("--version", action="version", version=f"flexitts {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"flexitts.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the chosen subcommand and return the process exit status.

    Bad input (any `FlexiTTSError`) prints one line on stderr and returns 2. Unexpected failures print
    one line too, with the traceback only when `FLEXITTS_DEBUG=1`.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except FlexiTTSError as error:
        print(f"flexitts: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flexitts: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not bad input: keep the message short unless asked
        if os.environ.get("FLEXITTS_DEBUG") == "1":
            raise
        print(
            f"flexitts: internal error: {type(error).__name__}: {' '.join(str(error).split())} "
            "(set FLEXITTS_DEBUG=1 for the traceback and please report it)",
            file=sys.stderr,
        )
        return 1
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
