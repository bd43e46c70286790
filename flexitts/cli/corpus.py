"""`flexitts corpus synth`: make the offline synthetic training corpus (espeak-ng + mbrola voices)."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `corpus` and its `synth` subcommand."""
    parser = subparsers.add_parser(
        "corpus",
        help="make the offline synthetic training corpus",
        description="Offline training corpus: real English sentences (WordNet, fortunes) spoken by espeak-ng voices.",
    )
    actions = parser.add_subparsers(dest="corpus_command", metavar="ACTION")
    actions.required = True
    synth = actions.add_parser(
        "synth",
        help="speak sentences into DIR/wavs with manifests and train/valid/test splits",
        description=(
            "Speak real English sentences with espeak-ng and mbrola voices (each voice also at two pitch/rate "
            "variants) into DIR: wavs/<speaker>/<id>.wav (16 kHz mono), manifest.jsonl, train/valid/test.jsonl "
            "and corpus.json. Deterministic for a seed; re-running the same command resumes or extends it."
        ),
    )
    synth.add_argument("--out", required=True, metavar="DIR", help="corpus folder (new, empty, or a corpus to resume)")
    synth.add_argument("--hours", required=True, type=float, metavar="H", help="hours of audio to make (at least)")
    synth.add_argument(
        "--voices",
        nargs="+",
        metavar="VOICE",
        help="voices (space- or comma-separated): mb-us1 mb-us2 mb-us3 mb-en1, en-us en-gb ... with optional "
        "+f1..f5/+m1..m8 variant (default: mb-us1 mb-us2 mb-us3 mb-en1 en-us en-gb en-us+f3 en-gb+m3)",
    )
    synth.add_argument("--seed", type=int, default=0, help="seed of the sentence split and assignment (default 0)")
    synth.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="concurrent espeak-ng processes (default: CPU count)"
    )
    synth.add_argument(
        "--heldout-speakers",
        nargs="*",
        metavar="PATTERN",
        default=None,
        help="speaker ids or patterns heard only in test (default: 'mb-us3*' 'en-gb-m3*'; give none for no held-out)",
    )
    synth.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    synth.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `corpus synth` and print a short summary."""
    from flexitts.corpus import synthesize_corpus

    summary = synthesize_corpus(
        args.out,
        args.hours,
        voices=args.voices,
        seed=args.seed,
        jobs=args.jobs,
        heldout_speakers=args.heldout_speakers,
        progress=not args.no_progress,
    )
    parts = ", ".join(
        f"{name} {split.utterances} utt / {split.hours:.3f} h / {len(split.speakers)} speakers"
        for name, split in summary.splits.items()
    )
    print(
        f"corpus {summary.out_dir}: {summary.hours:.3f} h in {summary.utterances} utterances ({parts}); "
        f"{len(summary.speakers)} speakers, held out: {', '.join(summary.heldout_speakers) or 'none'}; "
        f"{summary.written} written, {summary.reused} reused, {len(summary.skipped)} skipped; "
        f"{summary.elapsed:.1f} s"
    )
    print(f"manifest: {summary.manifest}")
    return 0
