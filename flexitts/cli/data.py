"""`flexitts data ...`: prepare users' data sets."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prepare data manifests")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    prepare = actions.add_parser("prepare", help="convert an `audio_file|text` metadata.csv into a manifest")
    prepare.add_argument("--csv", required=True, help="metadata CSV (`audio_file|text`, paths relative to it)")
    prepare.add_argument("--out", required=True, help="manifest to write (JSON Lines)")
    prepare.add_argument("--speaker", default=None, help="speaker name for every row (default: the CSV's folder name)")
    prepare.add_argument("--delimiter", default="|", help="column separator (default: |)")
    prepare.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from flexitts.data.prepare import prepare_csv

    utterances = prepare_csv(args.csv, args.out, speaker=args.speaker, delimiter=args.delimiter)
    hours = sum(u.duration or 0.0 for u in utterances) / 3600
    print(f"wrote {args.out}: {len(utterances)} utterances, {hours:.2f} h")
    return 0
