"""`flexitts eval ...`: measure models on a manifest (phone error rate of the ASR for now)."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate models on a manifest")
    targets = parser.add_subparsers(dest="target", metavar="TARGET")
    targets.required = True
    asr = targets.add_parser("asr", help="phone error rate of the CTC recogniser, overall and per speaker")
    asr.add_argument("--manifest", required=True, action="append", help="manifest(s) to score (repeatable)")
    asr.add_argument("--checkpoint", default=None, help="recogniser folder or URI (default: the bundled demo)")
    asr.add_argument("--limit", type=int, default=None, help="score only the first N utterances of each manifest")
    asr.add_argument("--json", default=None, help="also write the figures to this JSON file")
    asr.set_defaults(func=run_asr)


def run_asr(args: argparse.Namespace) -> int:
    from codec.asr import CTCPhoneRecognizer
    from flexitts.fileio import write_json_atomic
    from flexitts.text import PhonemeTable
    from flexitts.training.asr import phone_error_rate
    from flexitts.training.asr_data import ASRDataset

    model = CTCPhoneRecognizer.from_pretrained(args.checkpoint)
    table = PhonemeTable(model.config.symbols)
    report = {}
    for manifest in args.manifest:
        dataset = ASRDataset(manifest, table, max_seconds=60.0, limit=args.limit)
        overall, per_speaker = phone_error_rate(model, dataset)
        report[manifest] = {"per": overall, "utterances": len(dataset), "per_speaker": per_speaker}
        print(f"{manifest}: PER {overall:.4f} over {len(dataset)} utterances")
        for speaker, value in per_speaker.items():
            print(f"  {speaker:24s} {value:.4f}")
    if args.json:
        write_json_atomic(args.json, report)
    return 0
