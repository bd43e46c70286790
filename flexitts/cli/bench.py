"""`flexitts bench COMPONENT`: speed and behaviour benchmarks that write markdown + JSON reports."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks with markdown + JSON reports")
    components = parser.add_subparsers(dest="component", metavar="COMPONENT")
    components.required = True
    dynamic = components.add_parser("dynamic", help="merge speed, pruned vs plain DP, threshold vs frame rate")
    dynamic.add_argument("--out", default="reports", help="folder for dynamic.md / dynamic.json (default: reports)")
    dynamic.add_argument("--manifest", default=None, help="held-out manifest whose ASR features give the tau / frame-rate table")
    dynamic.add_argument("--asr", default=None, help="ASR features: bundled CTC recogniser (default), a checkpoint, or whisper:PATH")
    dynamic.add_argument("--limit", type=int, default=None, help="use only the first N utterances of the manifest")
    dynamic.add_argument("--merge-frames", type=int, default=1_000_000, help="frames in the merge benchmark (default 10^6)")
    dynamic.set_defaults(func=run_dynamic)


def run_dynamic(args: argparse.Namespace) -> int:
    from codec.dynamic.bench import run_dynamic_benchmark

    features = None
    if args.manifest:
        from codec.asr import load_asr_features
        from flexitts.data.features import manifest_features

        features = manifest_features(args.manifest, load_asr_features(args.asr), limit=args.limit)
    result = run_dynamic_benchmark(args.out, features, merge_frames=args.merge_frames)
    merge = result.get("merge", {})
    print(
        f"wrote {args.out}/dynamic.md and dynamic.json; merge speed-up over the loop: "
        f"{merge['speedup_fresh_output']:.1f}x (fresh output), {merge['speedup_reused_output']:.1f}x (reused output)"
    )
    return 0
